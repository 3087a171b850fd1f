"""Structured-config schema of a run and early validation of component configs.

The top-level keys are a dataclass in Hydra's ConfigStore (``hwaml_schema``), so a
misspelled key or a wrong type fails at composition, before any work, naming the
key. Component nodes (``searcher``, ``evaluator``, ``backend.*``, ``executor``)
hold a ``_target_``; their keys are checked against the target's signature (and
its simple type annotations) before anything is instantiated.
"""

from __future__ import annotations

import collections.abc
import difflib
import importlib
import inspect
import json
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from .constraints import normalise_constraints  # noqa: F401 - re-exported (older plugin code imports it from here)


class ConfigError(ValueError):
    """A configuration problem found before any work; ``key`` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


@dataclass
class BudgetConfig:
    trials: Optional[int] = 100
    seconds: Optional[float] = None
    # a trial running longer is stopped and recorded as failed with the reason
    trial_timeout_s: Optional[float] = None


@dataclass
class DeployConfig:
    enabled: bool = False  # deploy the best trial at the end of the run
    trial: Optional[int] = None  # a trial number instead of the best
    target: Optional[str] = None  # only this component (evaluator, or a backend's name); null: every one
    force: bool = False  # deploy a failed or infeasible trial anyway


@dataclass
class StoreConfig:
    # "NORMAL" with WAL survives a killed process (kill -9) with every committed
    # trial; "FULL" also survives power loss, at the cost of an fsync per commit.
    synchronous: str = "NORMAL"


@dataclass
class RunConfig:
    searcher: Any = None
    evaluator: Any = None
    backend: Dict[str, Any] = field(default_factory=dict)
    executor: Any = None
    # an Optuna pruner (config group pruner: median, percentile, successive_halving, hyperband); null: none
    pruner: Any = None
    # observers (config group observer, several at once: +observer=[mlflow,tensorboard])
    observer: Dict[str, Any] = field(default_factory=dict)
    # warm start: configurations evaluated first (a list inline, or a JSON/YAML file holding one)
    enqueue: Any = None
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    # empty: the evaluator's ``default_objectives`` (add one: +objectives.latency_ms=min)
    objectives: Dict[str, str] = field(default_factory=dict)
    constraints: Dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    resume: bool = False
    batch_size: Optional[int] = None  # candidates per step; default: the executor's workers
    progress: bool = True
    plots: bool = True
    deploy: DeployConfig = field(default_factory=DeployConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    name: str = "run"


def register_schema() -> None:
    ConfigStore.instance().store(name="hwaml_schema", node=RunConfig)


_RESERVED = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def _locate(path: str) -> Any:
    """Import ``module.attr`` (or ``module.Class.attr``). An ImportError raised
    *inside* the module (a missing dependency of the component) propagates as
    itself; only a module path that does not exist falls back to a nested name."""
    module, _, attr = path.rpartition(".")
    if not module:
        raise ImportError(f"{path!r} is not a dotted path (module.Name)")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        parent, _, nested = module.rpartition(".")
        if exc.name != module or not parent:
            raise  # something the component's module imports is missing: show that error
        owner = importlib.import_module(parent)
        if not hasattr(owner, nested):
            raise
        obj = getattr(owner, nested)  # module.Class.attr
    return getattr(obj, attr)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a config value fits a parameter annotation (Optional/Union included)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>" or type(annotation).__name__ == "UnionType":
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if value is None:
        return False
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple) or origin is collections.abc.Sequence:
        return isinstance(value, (list, tuple, ListConfig))
    if origin in (dict, typing.Mapping) or annotation is dict or origin is collections.abc.Mapping:
        return isinstance(value, (dict, DictConfig))
    if is_dataclass(annotation):
        return isinstance(value, (dict, DictConfig, annotation))
    return True


def _check_dataclass_value(value: Any, cls: Any, key: str) -> None:
    """Keys and simple types of a mapping given for a dataclass-typed parameter."""
    if not isinstance(value, Mapping):
        return
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for sub, v in value.items():
        if sub not in names:
            close = difflib.get_close_matches(str(sub), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{key}.{sub}", f"is not a field of {cls.__name__}{hint} (valid: {', '.join(names)})")
        ann = hints.get(sub, Any)
        if not _type_ok(v, ann):
            raise ConfigError(f"{key}.{sub}", f"expected {_type_name(ann)}, got {type(v).__name__} {v!r}")
        if is_dataclass(ann) or any(is_dataclass(a) for a in typing.get_args(ann)):
            inner = ann if is_dataclass(ann) else next(a for a in typing.get_args(ann) if is_dataclass(a))
            _check_dataclass_value(v, inner, f"{key}.{sub}")


def as_config(cls: Any, value: Any, key: str = "") -> Any:
    """Build the config dataclass ``cls`` from a mapping (what Hydra passes), strictly:
    an unknown key or a wrong simple type raises :class:`ConfigError` naming it.
    ``None`` gives the defaults; an instance passes through. Components use it to
    group many constructor parameters::

        def __init__(self, training: Optional[Mapping[str, Any]] = None):
            self.training = as_config(TrainingConfig, training, "training")
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, Mapping):
        raise ConfigError(key or cls.__name__, f"expected a mapping of {cls.__name__} fields, got {type(value).__name__} {value!r}")
    _check_dataclass_value(value, cls, key or cls.__name__)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in value.items():
        ann = hints.get(k)
        inner = ann if ann is not None and is_dataclass(ann) else next((a for a in typing.get_args(ann) if is_dataclass(a)), None) if ann is not None else None
        kwargs[k] = as_config(inner, v, f"{key}.{k}" if key else k) if inner is not None and isinstance(v, Mapping) else v
    return cls(**kwargs)


def check_component(node: Any, key: str) -> None:
    """Check one ``_target_`` node against its target's signature.

    Raises :class:`ConfigError` naming ``key.sub_key`` for an unknown key (with a
    close match when there is one), a value that does not fit the parameter's
    annotation (``Optional``/``Union`` and config dataclasses included), or a
    target that cannot be imported (an ImportError inside the component's module
    is shown as that ImportError).
    """
    if not isinstance(node, (DictConfig, dict)):
        raise ConfigError(key, f"expected a config node with _target_, got {node!r}")
    target = node.get("_target_")
    if target is None:
        raise ConfigError(key, "has no _target_ (is the config group option selected?)")
    try:
        obj = _locate(str(target))
    except ImportError as exc:
        raise ConfigError(f"{key}._target_", f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
    except AttributeError as exc:
        raise ConfigError(f"{key}._target_", f"cannot find {target!r}: {exc}") from exc
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except (NameError, TypeError, AttributeError):  # unresolvable (string) annotations are not checked
        hints = {}
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    for sub, value in values.items():
        if sub in _RESERVED:
            continue
        if sub not in params:
            if takes_kwargs:
                continue
            close = difflib.get_close_matches(sub, list(params), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{key}.{sub}", f"is not a parameter of {target}{hint} (valid: {', '.join(p for p in params if p not in ('self', 'args', 'kwargs'))})")
        ann = hints.get(sub, params[sub].annotation)
        if isinstance(ann, str):
            continue
        if value is None and params[sub].default is None:
            continue  # an explicit null for a parameter whose default is None
        if not _type_ok(value, ann):
            raise ConfigError(f"{key}.{sub}", f"expected {_type_name(ann)}, got {type(value).__name__} {value!r}")
        dc = ann if is_dataclass(ann) else next((a for a in typing.get_args(ann) if is_dataclass(a)), None)
        if dc is not None:
            _check_dataclass_value(value, dc, f"{key}.{sub}")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self":
            if name not in values:
                raise ConfigError(f"{key}.{name}", f"is required by {target} but missing")


def check_run_config(cfg: DictConfig) -> None:
    """Validate every component node and the objective/constraint settings."""
    if cfg.get("evaluator") is None:
        raise ConfigError("evaluator", "no evaluator selected (add evaluator=<option> or experiment=<preset>)")
    if cfg.get("searcher") is None:
        raise ConfigError("searcher", "no searcher selected (add searcher=<option>)")
    check_component(cfg.searcher, "searcher")
    check_component(cfg.evaluator, "evaluator")
    for name, node in (cfg.get("backend") or {}).items():
        check_component(node, f"backend.{name}")
    if cfg.get("executor") is not None:
        check_component(cfg.executor, "executor")
    if cfg.get("pruner") is not None:
        check_component(cfg.pruner, "pruner")
    for name, node in (cfg.get("observer") or {}).items():
        check_component(node, f"observer.{name}")
    load_enqueue(cfg.get("enqueue"))
    objectives = cfg.get("objectives") or {}
    for name, direction in objectives.items():
        if str(direction) not in ("max", "min"):
            raise ConfigError(f"objectives.{name}", f"must be 'max' or 'min', got {direction!r}")
    for name, bound in (cfg.get("constraints") or {}).items():
        if isinstance(bound, (DictConfig, dict)):
            for k, v in bound.items():
                if k not in ("min", "max"):
                    raise ConfigError(f"constraints.{name}.{k}", "only 'min' and 'max' bounds are allowed")
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise ConfigError(f"constraints.{name}.{k}", f"expected a number, got {v!r}")
        elif not isinstance(bound, (int, float)) or isinstance(bound, bool):
            raise ConfigError(f"constraints.{name}", f"expected a number (upper bound) or {{min:, max:}}, got {bound!r}")
    budget = cfg.budget
    if budget.trials is None and budget.seconds is None:
        raise ConfigError("budget", "set budget.trials and/or budget.seconds")
    if budget.trials is not None and budget.trials < 0:
        raise ConfigError("budget.trials", f"must be >= 0, got {budget.trials}")
    if budget.get("trial_timeout_s") is not None and not budget.trial_timeout_s > 0:
        raise ConfigError("budget.trial_timeout_s", f"must be > 0 seconds (or null), got {budget.trial_timeout_s}")
    if str(cfg.store.synchronous).upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("store.synchronous", f"must be NORMAL or FULL, got {cfg.store.synchronous!r}")


def resolve_objectives(cfg: DictConfig, evaluator: Any) -> Dict[str, str]:
    """The run's objectives: ``cfg.objectives`` or else the evaluator's defaults."""
    objectives = dict(cfg.get("objectives") or {})
    if not objectives:
        objectives = dict(getattr(evaluator, "default_objectives", None) or {})
    if not objectives:
        raise ConfigError("objectives", f"none set and {type(evaluator).__name__} has no default_objectives; add e.g. +objectives.accuracy=max")
    for name, direction in objectives.items():
        if str(direction) not in ("max", "min"):
            raise ConfigError(f"objectives.{name}", f"must be 'max' or 'min', got {direction!r}")
    return objectives


def instantiate_components(cfg: DictConfig, with_searcher: bool = True) -> Dict[str, Any]:
    """Instantiate searcher, evaluator and backends from a checked config."""
    from hydra.utils import instantiate

    comps: Dict[str, Any] = {}
    if with_searcher:
        comps["searcher"] = _instantiate(instantiate, cfg.searcher, "searcher")
    comps["evaluator"] = _instantiate(instantiate, cfg.evaluator, "evaluator")
    for name, node in (cfg.get("backend") or {}).items():
        comps[f"backend.{name}"] = _instantiate(instantiate, node, f"backend.{name}")
    return comps


def instantiate_observers(cfg: DictConfig) -> Dict[str, Any]:
    """The run's observers (``observer.<name>``), in the loop's process only."""
    from hydra.utils import instantiate

    return {f"observer.{name}": _instantiate(instantiate, node, f"observer.{name}") for name, node in (cfg.get("observer") or {}).items()}


def instantiate_pruner(cfg: DictConfig) -> Any:
    """The run's Optuna pruner, or ``None`` (each process of the run builds its own)."""
    if cfg.get("pruner") is None:
        return None
    from hydra.utils import instantiate

    pruner = _instantiate(instantiate, cfg.pruner, "pruner")
    import optuna

    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ConfigError("pruner", f"{cfg.pruner.get('_target_')} is not an optuna.pruners.BasePruner")
    return pruner


def load_enqueue(value: Any) -> List[Dict[str, Any]]:
    """``enqueue``: a list of configurations, or the path of a JSON/YAML file holding one.

    Raises :class:`ConfigError` naming the file (and the entry) for a missing or
    malformed file; whether each is a point of the search space is checked by the
    loop before any work.
    """
    if value is None:
        return []
    if isinstance(value, DictConfig) or isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    where = "enqueue"
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError("enqueue", f"file {str(path)!r} does not exist (give a list of configurations or a JSON/YAML file)")
        import yaml

        text = path.read_text()
        try:
            value = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError("enqueue", f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from exc
        where = f"enqueue ({path})"
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError("enqueue", f"{where}: expected a list of configurations, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"enqueue[{i}]", f"{where}: expected a mapping of parameter names to values, got {item!r}")
    return [dict(v) for v in value]


def _instantiate(instantiate: Any, node: Any, key: str) -> Any:
    try:
        return instantiate(node, _convert_="all")
    except Exception as exc:  # noqa: BLE001 - a constructor's own validation error is a config error naming the node
        cause = exc.__cause__ or exc
        raise ConfigError(key, f"could not be instantiated ({node.get('_target_')}): {type(cause).__name__}: {cause}") from exc
