"""Plugin discovery, listing and the per-run plugin manager.

Installed plugins are found through the ``hwaml`` entry-point group and loaded
one at a time: a plugin that fails to import is recorded with its error and the
others still load. It only becomes fatal when the composed configuration needs
something that plugin ships (see :meth:`Registry.explain_missing`).

Environment switches (as in llm and datasette):

``HWAML_LOAD_PLUGINS=a,b``
    load only these entry points (an empty value loads none);
``HWAML_DISABLE_PLUGINS=a,b``
    skip these entry points.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import os
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "hwaml"
CORE_CONF_PACKAGE = "hwaml_conf"
#: hooks of which at most one implementation may be active in a run
EXCLUSIVE_HOOKS = ("search_space", "propose", "evaluate", "build_model")
#: the hooks a run cannot do without, and who should provide them
REQUIRED_HOOKS = {"search_space": "evaluator", "propose": "searcher", "evaluate": "evaluator"}


class PluginError(RuntimeError):
    """A plugin problem that stops a run: a conflict, a missing provider, a failed import."""


@dataclass(frozen=True)
class PluginInfo:
    """One entry point as ``hwaml plugins`` lists it."""

    name: str
    distribution: str
    version: str
    module: str
    status: str  # "loaded", "failed", "disabled"
    hooks: Tuple[str, ...] = ()
    config_groups: Tuple[str, ...] = ()
    error: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["hooks"] = list(self.hooks)
        d["config_groups"] = list(self.config_groups)
        return d


class StaticPluginManager(pluggy.PluginManager):
    """A pluggy manager whose hook discovery never runs a component's code.

    pluggy before 1.7 finds hook implementations with ``getattr`` on every
    attribute of a registered object, so registering a component ran its
    properties (a property that trains a supernet or raises "not built yet"
    fired at registration). This manager reads attributes with
    :func:`inspect.getattr_static` under every pluggy version: only functions
    and methods carrying the ``hwaml_impl`` marker are hook implementations.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Optional[Dict[str, Any]]:
        try:
            attr = inspect.getattr_static(plugin, name)
        except AttributeError:
            return None
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if not (inspect.isfunction(attr) or inspect.ismethod(attr) or inspect.isbuiltin(attr)):
            return None
        opts = inspect.getattr_static(attr, self.project_name + "_impl", None)
        return opts if isinstance(opts, dict) else None


def make_plugin_manager() -> pluggy.PluginManager:
    pm = StaticPluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _env_list(name: str) -> Optional[List[str]]:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


def _package_dir(package: str) -> Optional[Path]:
    """Where a package lives on disk, found without executing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _conf_dir_for_entry(entry: str) -> Optional[Path]:
    """Resolve a ``pkg://a.b`` or ``file://dir`` search-path entry to a folder."""
    if entry.startswith("file://"):
        return Path(entry[len("file://") :])
    if entry.startswith("pkg://"):
        dotted = entry[len("pkg://") :].replace("/", ".")
        top, _, rest = dotted.partition(".")
        base = _package_dir(top)
        if base is None:
            return None
        return base.joinpath(*rest.split(".")) if rest else base
    return Path(entry)


def config_options(conf_dir: Path) -> List[Tuple[str, str]]:
    """All ``(group, option)`` pairs in a config folder (``group/option.yaml``)."""
    out: List[Tuple[str, str]] = []
    if conf_dir is None or not conf_dir.is_dir():
        return out
    for path in sorted(conf_dir.rglob("*.yaml")):
        rel = path.relative_to(conf_dir)
        if len(rel.parts) < 2:
            continue  # a primary config, not a group option
        out.append(("/".join(rel.parts[:-1]), rel.stem))
    return out


@dataclass
class Registry:
    """The result of loading every installed plugin once."""

    pm: pluggy.PluginManager
    infos: List[PluginInfo] = field(default_factory=list)
    search_path: List[Tuple[str, str]] = field(default_factory=list)  # (plugin, entry)
    #: names in HWAML_LOAD_PLUGINS / HWAML_DISABLE_PLUGINS that no entry point has
    unknown_switches: Dict[str, List[str]] = field(default_factory=dict)

    # -- listing ---------------------------------------------------------
    def info(self, name: str) -> PluginInfo:
        for i in self.infos:
            if i.name == name:
                return i
        raise KeyError(name)

    def failed(self) -> List[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def check_switches(self) -> None:
        """Raise :class:`PluginError` naming plugin switches that match no installed plugin."""
        if not self.unknown_switches:
            return
        known = ", ".join(sorted(i.name for i in self.infos)) or "none"
        parts = [f"{var}={','.join(names)}" for var, names in sorted(self.unknown_switches.items())]
        raise PluginError(f"no installed plugin is called {'; '.join(parts)} (installed plugins: {known})")

    # -- config groups ---------------------------------------------------
    def option_owners(self) -> Dict[Tuple[str, str], List[str]]:
        """Map every ``(group, option)`` to the plugins (and core) that ship it."""
        owners: Dict[Tuple[str, str], List[str]] = {}
        core = _package_dir(CORE_CONF_PACKAGE)
        for key in config_options(core):
            owners.setdefault(key, []).append("hwaml (core)")
        for plugin, entry in self.search_path:
            for key in config_options(_conf_dir_for_entry(entry)):
                owners.setdefault(key, []).append(plugin)
        return owners

    def check_conflicts(self) -> None:
        """Raise :class:`PluginError` if two plugins ship the same group/option."""
        clashes = {k: v for k, v in self.option_owners().items() if len(v) > 1}
        if clashes:
            lines = [f"  {g}/{o}.yaml is shipped by both {' and '.join(repr(p) for p in who)}" for (g, o), who in sorted(clashes.items())]
            raise PluginError(
                "config option conflict between plugins:\n" + "\n".join(lines) + "\nUninstall or disable one of them (HWAML_DISABLE_PLUGINS=name)."
            )

    def explain_missing(self, group: str, option: str, specific_only: bool = False) -> str:
        """Why ``group/option`` may be unavailable: a failed or disabled plugin shipping it."""
        notes = []
        for info in self.infos:
            if info.status == "loaded":
                continue
            top = info.module.split(".")[0]
            base = _package_dir(top)
            if base is None:
                continue
            if (group, option) in config_options(base / "conf"):
                what = f"failed to import: {info.error.strip().splitlines()[-1]}" if info.status == "failed" else "is disabled"
                notes.append(f"{group}/{option} is shipped by plugin {info.name!r} ({info.distribution}), which {what}")
        if not notes and not specific_only:
            failed = ", ".join(f"{i.name} ({i.error.strip().splitlines()[-1]})" for i in self.failed())
            if failed:
                notes.append(f"plugins that failed to import: {failed}")
        return "\n".join(notes)


_REGISTRY: Optional[Registry] = None
_REGISTRY_KEY: Optional[Tuple[Optional[str], Optional[str]]] = None


def load_plugins(refresh: bool = False) -> Registry:
    """Load every ``hwaml`` entry point (once per process unless ``refresh`` or
    the ``HWAML_LOAD_PLUGINS`` / ``HWAML_DISABLE_PLUGINS`` switches changed)."""
    global _REGISTRY, _REGISTRY_KEY
    key = (os.environ.get("HWAML_LOAD_PLUGINS"), os.environ.get("HWAML_DISABLE_PLUGINS"))
    if _REGISTRY is not None and not refresh and key == _REGISTRY_KEY:
        return _REGISTRY
    if refresh:
        importlib.invalidate_caches()
    pm = make_plugin_manager()
    registry = Registry(pm)
    only = _env_list("HWAML_LOAD_PLUGINS")
    disabled = set(_env_list("HWAML_DISABLE_PLUGINS") or [])
    eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    names = {ep.name for ep in eps}
    for var, listed in (("HWAML_LOAD_PLUGINS", only or []), ("HWAML_DISABLE_PLUGINS", sorted(disabled))):
        unknown = [n for n in listed if n not in names]
        if unknown:
            registry.unknown_switches[var] = unknown
    seen = set()
    for ep in eps:
        if ep.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        base = dict(name=ep.name, distribution=dist_name, version=version, module=ep.value)
        if (only is not None and ep.name not in only) or ep.name in disabled:
            registry.infos.append(PluginInfo(status="disabled", **base))
            continue
        try:
            obj = ep.load()
            pm.register(obj, name=ep.name)
        except Exception:  # noqa: BLE001 - any error while importing a plugin is reported, not fatal
            registry.infos.append(PluginInfo(status="failed", error=traceback.format_exc(), **base))
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(obj) or []))
        entries: List[str] = []
        impl = getattr(obj, "config_search_path", None)
        if impl is not None:
            try:
                entries = list(impl() or [])
            except Exception:  # noqa: BLE001 - a plugin whose hook breaks is listed as failed, the others load
                registry.infos.append(PluginInfo(status="failed", hooks=hooks, error=traceback.format_exc(), **base))
                pm.unregister(obj)
                continue
        groups = sorted({f"{g}/{o}" for e in entries for g, o in config_options(_conf_dir_for_entry(e))})
        registry.search_path.extend((ep.name, e) for e in entries)
        registry.infos.append(PluginInfo(status="loaded", hooks=hooks, config_groups=tuple(groups), **base))
    _REGISTRY, _REGISTRY_KEY = registry, key
    return registry


def plugin_objects(registry: Registry) -> Iterable[Tuple[str, Any]]:
    """The loaded entry-point objects (plugin modules), by name."""
    for name, obj in registry.pm.list_name_plugin():
        if obj is not None:
            yield name, obj


def build_run_manager(components: Mapping[str, Any], registry: Optional[Registry] = None) -> pluggy.PluginManager:
    """A fresh plugin manager for one run.

    ``components`` maps names (``"searcher"``, ``"evaluator"``,
    ``"backend.stm32f746"``) to the objects Hydra instantiated. Entry-point
    plugin modules are registered too, so that their observers
    (``trial_completed``) see the run. Exclusive hooks are checked: two active
    implementations is an error naming both; a missing one names who should
    provide it.
    """
    registry = registry if registry is not None else load_plugins()
    pm = make_plugin_manager()
    for name, obj in plugin_objects(registry):
        pm.register(obj, name=f"plugin:{name}")
    for name, obj in components.items():
        if obj is None:
            continue
        try:
            pm.register(obj, name=name)
        except ValueError as exc:  # already registered (the same object twice)
            raise PluginError(f"component {name!r} could not be registered: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"component {name!r} ({type(obj).__name__}) has an invalid hook: {exc}") from exc
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"unknown hook (misspelled?): {exc}") from exc
    for hook in EXCLUSIVE_HOOKS:
        impls = getattr(pm.hook, hook).get_hookimpls()
        if len(impls) > 1:
            names = " and ".join(repr(i.plugin_name) for i in impls)
            raise PluginError(f"hook {hook!r} has {len(impls)} active implementations: {names}; at most one may answer it")
    return pm


def check_required(pm: pluggy.PluginManager) -> None:
    for hook, who in REQUIRED_HOOKS.items():
        if not getattr(pm.hook, hook).get_hookimpls():
            raise PluginError(f"no active component implements {hook!r}; the {who} should (check `{who}=` in the config)")


def implementers(pm: pluggy.PluginManager, hook: str) -> List[str]:
    return [i.plugin_name for i in getattr(pm.hook, hook).get_hookimpls()]
