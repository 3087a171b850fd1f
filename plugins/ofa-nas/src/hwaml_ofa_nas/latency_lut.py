"""Latency look-up tables measured on the user's own device.

OFA predicts a network's latency by summing the measured latencies of its
blocks, each looked up by shape. Here a table is keyed by *layers of a module*
(:func:`hwaml_ofa_nas.layers.decompose`: each layer's type, structure and input
and output shapes), so it can cost any MobileNet-like network that any
evaluator builds, not only OFA sub-networks:

* :meth:`LatencyLUT.measure` times layers that are not in the table yet on
  this machine, with torch (eager, CPU) and/or onnxruntime (single-threaded by
  default), every layer (and whole network) timed in interleaved rounds, the
  minimum kept; for onnxruntime the cost of one session call with the same
  input and output shapes is subtracted, since a network pays it once;
* :meth:`LatencyLUT.calibrate` times whole networks interleaved with their
  layers and fits ``measured = scale * sum + offset`` per engine;
* :meth:`LatencyLUT.predict` sums a network's entries and applies the
  calibration.

The ``host_cpu_lut`` backend fills its table on demand (a layer seen for the
first time is measured and cached); ``hwaml-ofa-nas lut build`` fills it ahead
for every layer shape of an OFA supernet's space (:meth:`LatencyLUT.build`),
and ``hwaml-ofa-nas lut check`` compares predictions with whole-network
measurements.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from hwaml.progress import progress as _progress

from .layers import Layer, decompose

log = logging.getLogger("hwaml.ofa_nas")

__all__ = [
    "ENGINES",
    "STATISTICS",
    "MeasureConfig",
    "LatencyLUT",
    "LUTError",
    "measure_latency_ms",
    "make_runner",
    "time_interleaved",
    "fit_calibration",
    "rounds_for",
    "default_lut_path",
    "space_digest",
    "calibration_configs",
    "covering_configs",
    "file_lock",
]

ENGINES = ("torch", "onnxruntime")
#: 3: entries keyed by module layers (type, structure, shapes); 2: by OFA layer specs
FORMAT_VERSION = 3

#: ``min``: the least disturbed run (other processes and interrupts only ever
#: add time, so on a shared machine it is the stable estimate); ``p10``: the
#: 10th percentile; ``median``.
STATISTICS = ("min", "p10", "median")


class LUTError(ValueError):
    """A latency table that cannot be used (malformed file, missing entry)."""


@dataclass(frozen=True)
class MeasureConfig:
    """How layers and networks are timed (``measure:`` in the backend's config).

    :param threads: CPU threads used for timing (and assumed at deployment).
    :param warmup: untimed calls per runner first.
    :param repeats: timed calls per layer / network, spread over ``rounds``.
    :param rounds: interleaved rounds (an int, or per engine); ``None``: one
        call per visit for torch, 10 for onnxruntime.
    :param calibrate: whole networks timed with their layers to fit
        ``scale * sum + offset`` (0: predict the plain sum).
    :param statistic: ``min``, ``p10`` or ``median`` of the timed calls.
    """

    threads: int = 1
    warmup: int = 10
    repeats: int = 200
    rounds: Union[int, Dict[str, int], None] = None
    calibrate: int = 20
    statistic: str = "min"

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"measure.statistic: unknown statistic {self.statistic!r}; choose one of {STATISTICS}")
        for name, low in (("threads", 1), ("warmup", 0), ("repeats", 1), ("calibrate", 0)):
            if int(getattr(self, name)) < low:
                raise ValueError(f"measure.{name} must be >= {low}, got {getattr(self, name)}")


def space_digest(space: Any) -> str:
    """Short stable hash of a search space (its name and dimensions)."""
    import hashlib

    text = json.dumps({"name": getattr(space, "name", ""), "dims": space.describe()}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def default_lut_path(space: Any = None, threads: int = 1) -> Path:
    """Where a table is cached by default: per search space (its calibration is
    fitted on that space's networks), host and thread count."""
    root = Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "ofa_nas"
    host = platform.node() or "host"
    what = f"{getattr(space, 'name', 'space')}_{space_digest(space)}_" if space is not None else ""
    return root / f"lut_{what}{host}_{threads}t.yaml"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (``path.lock``): processes that
    share a table measure one at a time (so they neither disturb each other's
    timing nor overwrite each other's entries)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
        fcntl = None  # type: ignore[assignment]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


class _Threads:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def _reduce(times: np.ndarray, statistic: str) -> float:
    if statistic == "min":
        return float(times.min())
    if statistic == "p10":
        return float(np.percentile(times, 10))
    if statistic == "median":
        return float(np.median(times))
    raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")


class _IOProxy(nn.Module):
    """The cheapest graph with a layer's input and output shapes: what one call
    costs apart from the layer's arithmetic (onnxruntime's ``run`` overhead,
    feeding the input and materialising the output)."""

    def __init__(self, output_shape: Sequence[int]):
        super().__init__()
        self.out = tuple(int(s) for s in output_shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = x.reshape(b, -1)[:, :1]
        return y.reshape((b,) + (1,) * len(self.out)).expand((b,) + self.out)


def make_runner(model: nn.Module, input_shape: Tuple[int, ...], engine: str = "torch", threads: int = 1) -> Callable[[], Any]:
    """A zero-argument callable running one batch of ``model`` on this CPU
    (torch eager, or an onnxruntime session with ``threads`` intra-op threads,
    one inter-op thread and sequential execution). ``input_shape`` includes the
    batch dimension. Time torch runners inside :func:`time_interleaved` (it sets
    the thread count and inference mode)."""
    model.eval()
    x = torch.randn(*input_shape)
    if engine == "torch":
        return lambda: model(x)
    if engine == "onnxruntime":
        import onnxruntime as ort

        from .export import onnx_bytes

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(onnx_bytes(model, input_shape), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.numpy()}
        return lambda: sess.run(None, feed)
    raise ValueError(f"unknown latency engine {engine!r}; choose one of {ENGINES}")


def time_interleaved(
    runners: Sequence[Callable[[], Any]],
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 200,
    rounds: int = 20,
    statistic: str = "min",
    seed: int = 0,
    progress: bool = False,
    desc: str = "timing",
) -> np.ndarray:
    """Latency (ms) of each runner: ``repeats`` timed calls each, spread over
    ``rounds`` rounds that visit the runners in a fresh random order, reduced
    with ``statistic``.

    Interleaving gives every runner a share of every phase of the machine's
    load, so the table's entries and the whole networks they are compared with
    are measured under the same conditions, and the minimum over calls spread
    across the whole measurement finds an undisturbed slot for each.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")
    n = len(runners)
    rounds = max(1, min(rounds, repeats))
    per_round = max(1, -(-repeats // rounds))
    samples = np.empty((n, rounds * per_round))
    rng = np.random.default_rng(seed)
    clock = time.perf_counter
    with _Threads(threads), torch.inference_mode():
        for fn in runners:
            for _ in range(warmup):
                fn()
        for r in _progress(range(rounds), total=rounds, desc=desc, unit="round", enabled=progress):
            col = r * per_round
            for i in rng.permutation(n):
                fn = runners[i]
                row = samples[i]
                for j in range(per_round):
                    t0 = clock()
                    fn()
                    row[col + j] = clock() - t0
    return np.asarray([_reduce(row, statistic) for row in samples]) * 1e3


def measure_latency_ms(
    model: nn.Module,
    input_shape: Tuple[int, ...],
    engine: str = "torch",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 200,
    statistic: str = "min",
    rounds: int = 1,
) -> float:
    """Latency (ms) of one forward pass of ``model`` on this CPU (``input_shape``
    with the batch dimension): the minimum (default) of ``repeats`` timed runs
    after ``warmup``."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")
    return float(time_interleaved([make_runner(model, input_shape, engine, threads)], threads, warmup, repeats, rounds, statistic)[0])


#: calls per visit of a runner in :func:`time_interleaved`, per engine, when
#: ``rounds`` is not given: torch blocks are timed one call per visit, so each
#: call follows a different layer as inside a network (cold L1, warm L2);
#: onnxruntime's per-call session overhead is steadier over 10 calls in a row.
CALLS_PER_VISIT = {"torch": 1, "onnxruntime": 10}


def rounds_for(engine: str, repeats: int, rounds: Optional[int | Mapping[str, int]] = None) -> int:
    """Interleaved rounds for ``engine``: ``rounds`` (an int, or a per-engine
    mapping), else ``repeats / CALLS_PER_VISIT[engine]``."""
    if isinstance(rounds, Mapping):
        rounds = rounds.get(engine)
    if rounds is None:
        return max(1, repeats // CALLS_PER_VISIT.get(engine, 1))
    return int(rounds)


def fit_calibration(sums: Sequence[float], measured: Sequence[float]) -> Dict[str, float]:
    """Robust straight line ``measured = scale * sum + offset`` (Theil-Sen: the
    median of pairwise slopes, the offset the median residual, so one disturbed
    network cannot tilt or shift it); a pure ratio when the points carry no trend."""
    from scipy.stats import theilslopes

    x, y = np.asarray(sums, float), np.asarray(measured, float)
    scale, offset = (theilslopes(y, x, method="joint")[:2] if len(x) >= 3 and np.ptp(x) > 0 else (np.nan, np.nan))
    if not scale > 0 or not np.isfinite(offset):
        scale, offset = float(np.median(y / x)), 0.0
    return {"scale": float(scale), "offset": float(offset), "n": int(len(x))}


# ---------------------------------------------------------------------------
# which networks to measure
# ---------------------------------------------------------------------------


def _ofa_extremes(space: Any) -> Optional[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """The smallest and largest configuration of an OFA space (``space.meta["ofa"]``), else None."""
    meta = getattr(space, "meta", {}).get("ofa")
    if not meta:
        return None

    def pick(f: Callable) -> Dict[str, Any]:
        block = {"kernel": f(meta["kernel_choices"]), "expand": f(meta["expand_choices"])}
        depth = f(meta["depth_choices"])
        return {meta["resolution_key"]: f(meta["resolutions"]), **{k: [dict(block) for _ in range(depth)] for k in meta["stage_keys"]}}

    return pick(min), pick(max)


def calibration_configs(space: Any, n: int, seed: int = 0) -> List[Dict[str, Any]]:
    """The configurations whose whole networks calibrate a table: ``max(2, n)``
    drawn from ``space`` with ``seed``, the first two replaced by the smallest
    and largest network when the space is an OFA space (so the fit interpolates
    over the whole range)."""
    rng = np.random.default_rng(seed)
    configs = [space.sample(rng) for _ in range(max(2, int(n)))]
    ext = _ofa_extremes(space)
    if ext is not None:
        configs[0], configs[1] = ext
    return configs


def covering_configs(arch: Any) -> List[Dict[str, Any]]:
    """Sub-network configurations of an OFA supernet shape that together contain
    every layer shape of its space: per resolution, kernel and expand ratio, all
    stages at full depth with that block (a block's shape depends only on the
    resolution, its stage, whether it is a stage's first block, its kernel and
    its expand ratio)."""
    from .supernet import supernet_config

    arch = supernet_config(arch)
    depth = max(arch.depth_choices)
    return [
        {"resolution": r, **{n: [{"kernel": k, "expand": e} for _ in range(depth)] for n in arch.stage_names}}
        for r in arch.resolutions
        for k in arch.kernel_choices
        for e in arch.expand_choices
    ]


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

Network = Tuple[nn.Module, Tuple[int, ...]]  # (module, input shape without the batch dimension)


class LatencyLUT:
    """Per-layer latencies (ms) for one or more engines, plus how they were measured.

    ``entries[key][engine]`` is the latency of the layer whose
    :attr:`~hwaml_ofa_nas.layers.Layer.key` is ``key``, timed alone with an
    input of its real shape; for onnxruntime the cost of one session call with
    the same input and output shapes (``meta["call_overhead_ms"]``) is
    subtracted, because a whole network pays it once, not once per layer.
    :meth:`predict` returns ``scale * sum(entries) + offset`` per engine: the
    fixed term ``offset`` is the per-network overhead (one call, the framework's
    dispatch between layers) and ``scale`` the remaining systematic difference
    between isolated and chained layers, both fitted by :meth:`calibrate` on
    whole networks timed interleaved with their layers (``meta["calibration"]``).
    """

    def __init__(self, entries: Optional[Mapping[str, Mapping[str, float]]] = None, meta: Optional[Mapping[str, Any]] = None):
        self.entries: Dict[str, Dict[str, float]] = {k: dict(v) for k, v in (entries or {}).items()}
        self.meta: Dict[str, Any] = {"format": FORMAT_VERSION, "engines": [], **dict(meta or {})}

    @property
    def engines(self) -> List[str]:
        """Engines some entry was measured with."""
        return list(self.meta.get("engines") or [])

    @property
    def calibration(self) -> Dict[str, Dict[str, Any]]:
        return dict(self.meta.get("calibration") or {})

    def __len__(self) -> int:
        return len(self.entries)

    # -- measuring ---------------------------------------------------------
    def missing(self, layers: Sequence[Layer], engines: Sequence[str]) -> List[Layer]:
        """The layers (one per key) that lack an entry for any of ``engines``."""
        out: Dict[str, Layer] = {}
        for layer in layers:
            row = self.entries.get(layer.key, {})
            if layer.key not in out and any(e not in row for e in engines):
                out[layer.key] = layer
        return list(out.values())

    def measure(
        self,
        layers: Sequence[Layer],
        engines: Sequence[str],
        settings: Optional[MeasureConfig] = None,
        networks: Sequence[Network] = (),
        progress: bool = False,
        seed: int = 0,
    ) -> Dict[str, List[float]]:
        """Time the ``layers`` that have no entry yet (per engine) and the whole
        ``networks``, interleaved together per engine; add the entries and return
        the networks' latencies (ms) per engine."""
        settings = settings or MeasureConfig()
        for e in engines:
            if e not in ENGINES:
                raise ValueError(f"unknown latency engine {e!r}; choose one of {ENGINES}")
        self._check_settings(settings)
        runners: List[Callable[[], Any]] = []
        slots: Dict[Tuple[str, str, str], int] = {}  # (what, key, engine) -> runner index
        todo = {e: self.missing(layers, [e]) for e in engines}
        n_layers = sum(len(v) for v in todo.values())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the runners' inputs; the global RNG untouched
            self._runners(todo, engines, settings, networks, runners, slots, progress)
        ms = np.empty(len(runners))
        for e in engines:  # each engine's layers and networks interleaved together
            idx = [i for (what, key, eng), i in slots.items() if eng == e]
            if idx:
                ms[idx] = time_interleaved(
                    [runners[i] for i in idx], settings.threads, settings.warmup, settings.repeats, rounds_for(e, settings.repeats, settings.rounds), settings.statistic, seed, progress, f"latency table ({e})"
                )
        overhead = dict(self.meta.get("call_overhead_ms") or {})
        for e in engines:
            io = []
            for layer in todo[e]:
                t = float(ms[slots[("layer", layer.key, e)]])
                if ("io", layer.key, e) in slots:
                    o = float(ms[slots[("io", layer.key, e)]])
                    io.append(o)
                    # never below a tenth of the raw time: noise must not make a layer free
                    t = max(t - o, 0.1 * t)
                self.entries.setdefault(layer.key, {})[e] = t
            if io:
                overhead[e] = float(np.median(io))
        if overhead:
            self.meta["call_overhead_ms"] = overhead
        self.meta["engines"] = sorted(set(self.engines) | set(engines))
        self.meta["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if n_layers:
            log.debug("latency table: %d layer entries measured with %s", n_layers, list(engines))
        return {e: [float(ms[slots[("net", str(i), e)]]) for i in range(len(networks))] for e in engines}

    @staticmethod
    def _runners(todo: Mapping[str, Sequence[Layer]], engines: Sequence[str], settings: MeasureConfig, networks: Sequence[Network], runners: List[Callable[[], Any]], slots: Dict[Tuple[str, str, str], int], progress: bool) -> None:
        for e in engines:
            for layer in _progress(todo[e], total=len(todo[e]), desc=f"latency table: prepare layers ({e})", unit="layer", enabled=progress):
                slots[("layer", layer.key, e)] = len(runners)
                runners.append(make_runner(layer.module, layer.input_shape, e, settings.threads))
                if e == "onnxruntime":
                    slots[("io", layer.key, e)] = len(runners)
                    runners.append(make_runner(_IOProxy(layer.output_shape).eval(), layer.input_shape, e, settings.threads))
            for i, (module, shape) in enumerate(networks):
                slots[("net", str(i), e)] = len(runners)
                runners.append(make_runner(module, (1,) + tuple(shape), e, settings.threads))

    def _check_settings(self, settings: MeasureConfig) -> None:
        """Record the timing settings; entries measured with other settings are not comparable."""
        mine = {"threads": settings.threads, "warmup": settings.warmup, "repeats": settings.repeats, "rounds": settings.rounds, "statistic": settings.statistic}
        old = self.meta.get("measure")
        if old is None:
            self.meta["measure"] = mine
            self.meta.update(_host_meta())
        elif {k: old.get(k) for k in ("threads", "statistic")} != {k: mine[k] for k in ("threads", "statistic")}:
            raise LUTError(
                f"this latency table was measured with threads={old.get('threads')}, statistic={old.get('statistic')!r}; "
                f"adding entries with threads={mine['threads']}, statistic={mine['statistic']!r} would mix incomparable times (use another lut_path)"
            )
        elif old != mine:
            log.warning("latency table: new entries are timed with %s, earlier ones with %s", mine, old)

    def calibrate(
        self,
        networks: Sequence[Network],
        engines: Sequence[str],
        settings: Optional[MeasureConfig] = None,
        progress: bool = False,
        seed: int = 0,
        source: str = "",
        extra_layers: Sequence[Layer] = (),
    ) -> Dict[str, Dict[str, Any]]:
        """Fit ``measured = scale * table_sum + offset`` per engine on whole
        ``networks`` timed interleaved with their layers that are missing (and
        ``extra_layers``, to fill a table in the same measurement)."""
        if not networks:
            raise ValueError("calibration needs at least one network")
        per_net = [decompose(m, shape) for m, shape in networks]
        times = self.measure([layer for ls in per_net for layer in ls] + list(extra_layers), engines, settings, networks, progress, seed)
        calibration = dict(self.meta.get("calibration") or {})
        for e in engines:
            sums = [self.predict(ls, e, raw=True) for ls in per_net]
            calibration[e] = {**fit_calibration(sums, times[e]), "source": source}
        self.meta["calibration"] = calibration
        return {e: calibration[e] for e in engines}

    @classmethod
    def build(
        cls,
        arch: Any,
        engines: Sequence[str] = ENGINES,
        measure: Union[MeasureConfig, Mapping[str, Any], None] = None,
        progress: bool = True,
        seed: int = 0,
    ) -> "LatencyLUT":
        """A complete table for an OFA supernet shape: every layer shape of its
        space (:func:`covering_configs`) measured interleaved with
        ``measure.calibrate`` whole sub-networks (:func:`calibration_configs`
        with ``seed``, the ones the ``host_cpu_lut`` backend calibrates on)."""
        from hwaml.config import as_config

        from .supernet import OFAMobileNetV3, build_subnet, supernet_config

        settings = as_config(MeasureConfig, measure, "measure")
        arch = supernet_config(arch)
        space = OFAMobileNetV3.space_for(arch)

        def net(cfg: Mapping[str, Any]) -> Network:
            r = int(cfg["resolution"])
            return build_subnet(arch, cfg).eval(), (arch.in_channels, r, r)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            cover = [layer for m, shape in (net(c) for c in covering_configs(arch)) for layer in decompose(m, shape)]
            nets = [net(c) for c in calibration_configs(space, settings.calibrate, seed)] if settings.calibrate > 0 else []
        lut = cls(meta={"arch": arch.to_dict(), "arch_digest": arch.digest(), "space": space.name, "space_digest": space_digest(space)})
        if nets:
            lut.calibrate(nets, engines, settings, progress, seed, source=f"{len(nets)} networks of {space.name} {space_digest(space)} (seed {seed})", extra_layers=cover)
        else:
            lut.measure(cover, engines, settings, progress=progress, seed=seed)
        log.info("latency table: %d layer shapes measured with %s", len(lut), list(engines))
        return lut

    # -- predicting ----------------------------------------------------------
    def predict(self, layers: Sequence[Layer], engine: str = "torch", raw: bool = False) -> float:
        """Predicted latency (ms): the sum of the layers' entries, with the
        whole-network calibration unless ``raw``."""
        total = sum(self.lookup(layer, engine) for layer in layers)
        cal = self.calibration.get(engine)
        if raw or not cal:
            return float(total)
        return float(cal["scale"]) * total + float(cal["offset"])

    def predict_model(self, module: nn.Module, input_shape: Sequence[int], engine: str = "torch", raw: bool = False) -> float:
        """:meth:`predict` for a module and its input shape (without the batch dimension)."""
        return self.predict(decompose(module, input_shape), engine, raw)

    def lookup(self, layer: Layer, engine: str = "torch") -> float:
        row = self.entries.get(layer.key)
        if row is None:
            raise LUTError(
                f"the latency table has no entry for layer {layer.name!r} ({layer.key}); measure it (backend host_cpu_lut with "
                f"measure_missing=true) or fill the table ahead with `hwaml-ofa-nas lut build`"
            )
        if engine not in row:
            raise LUTError(f"the latency table's entry {layer.key!r} was measured with {sorted(row)}, not {engine!r}")
        return float(row[engine])

    # -- files -----------------------------------------------------------
    def merge(self, other: "LatencyLUT") -> None:
        """Add ``other``'s entries (and calibrations) this table lacks."""
        for key, row in other.entries.items():
            mine = self.entries.setdefault(key, {})
            for e, v in row.items():
                mine.setdefault(e, float(v))
        cal = dict(other.calibration)
        cal.update(self.calibration)
        if cal:
            self.meta["calibration"] = cal
        self.meta["engines"] = sorted(set(self.engines) | set(other.engines))
        if "measure" not in self.meta and "measure" in other.meta:
            self.meta["measure"] = other.meta["measure"]

    def to_dict(self) -> Dict[str, Any]:
        return {"meta": self.meta, "entries": self.entries}

    def save(self, path: str | Path) -> Path:
        """Write YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.dump(self.to_dict(), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=True)
        else:
            text = json.dumps(self.to_dict(), indent=1, sort_keys=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyLUT":
        """Read a table; malformed files raise :class:`LUTError` naming file and line."""
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when available: tables get large
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f":{mark.line + 1}" if mark is not None else ""
                raise LUTError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LUTError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
        if not isinstance(data, dict) or "entries" not in data or not isinstance(data["entries"], dict):
            raise LUTError(f"{path}: expected a mapping with 'meta' and 'entries' (a latency table written by hwaml-ofa-nas)")
        meta = data.get("meta") or {}
        if meta.get("format", FORMAT_VERSION) != FORMAT_VERSION:
            raise LUTError(
                f"{path}: a format-{meta.get('format')} latency table (keyed by OFA layer specs); this version keys entries by "
                f"module layers (format {FORMAT_VERSION}): delete it or rebuild it with `hwaml-ofa-nas lut build`"
            )
        for key, row in data["entries"].items():
            if not isinstance(row, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row.values()):
                raise LUTError(f"{path}: entry {key!r} must map engine names to latencies in ms, got {row!r}")
        return cls(data["entries"], meta)


def _host_meta() -> Dict[str, Any]:
    meta = {
        "host": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": str(torch.__version__),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        import onnxruntime

        meta["onnxruntime"] = str(onnxruntime.__version__)
    except ImportError:  # pragma: no cover - declared dependency
        pass
    return meta
