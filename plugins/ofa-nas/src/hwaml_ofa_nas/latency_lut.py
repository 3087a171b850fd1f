"""Latency look-up tables measured on the user's own device.

OFA predicts a sub-network's latency by summing the measured latencies of its
blocks, each looked up by shape (input size, widths, kernel, stride, ...).
:meth:`LatencyLUT.build` enumerates every block shape the supernet's space can
produce, times each one on this machine with torch (eager, CPU) and with
onnxruntime (single-threaded by default, every layer and calibration network
timed in interleaved rounds, the minimum kept), and stores them in YAML or
JSON; :meth:`LatencyLUT.predict` sums them for a sub-network and applies the
calibration ``scale * sum + offset`` fitted on whole networks. ``hwaml-ofa-nas lut build`` does this from the
shell, and ``hwaml-ofa-nas lut check`` compares predictions with whole-network
measurements.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .supernet import LayerSpec, SupernetConfig, conv_out, layer_specs, supernet_config
from .elastic import make_divisible

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["ENGINES", "STATISTICS", "LatencyLUT", "LUTError", "space_layer_specs", "measure_latency_ms", "make_runner", "time_interleaved", "fit_calibration", "default_lut_path"]

ENGINES = ("torch", "onnxruntime")
FORMAT_VERSION = 2  # 2: onnxruntime entries net of the per-call overhead, interleaved timing


class LUTError(ValueError):
    """A latency table that cannot be used (malformed file, missing entry)."""


def default_lut_path(arch: SupernetConfig, threads: int) -> Path:
    """Where a table for this supernet shape and this host is cached by default."""
    root = Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "ofa_nas"
    host = platform.node() or "host"
    return root / f"lut_{arch.digest()}_{host}_{threads}t.yaml"


def space_layer_specs(arch: SupernetConfig) -> List[LayerSpec]:
    """Every distinct layer shape that any sub-network of ``arch`` contains.

    Spatial sizes depend only on the resolution (strides sit at the first block
    of a stage), so per resolution a stage has at most two block positions
    (first, later) times the kernel and expand choices.
    """
    out: Dict[str, LayerSpec] = {}
    k0, e0 = min(arch.kernel_choices), min(arch.expand_choices)
    for res in arch.resolutions:
        # the stem, first block and head follow from any configuration
        cfg = {"resolution": res, **{n: [{"kernel": k0, "expand": e0}] * max(arch.depth_choices) for n in arch.stage_names}}
        specs = layer_specs(arch, cfg)
        for s in (specs[0], specs[1], specs[-1]):
            out.setdefault(s.key, s)
        size = specs[1].out_size
        cin = specs[1].cout
        for stage, width in zip(arch.stages, arch.stage_widths):
            positions = [(cin, stage.stride, size)]
            after = conv_out(size, stage.stride)
            if max(arch.depth_choices) > 1:
                positions.append((width, 1, after))
            for pin, stride, psize in positions:
                for k in arch.kernel_choices:
                    for e in arch.expand_choices:
                        mid = make_divisible(round(pin * e), arch.divisor)
                        se_mid = make_divisible(mid // arch.se_reduction, arch.divisor) if stage.se else 0
                        s = LayerSpec("mbconv", psize, pin, width, k, stride, mid, se_mid, stage.act)
                        out.setdefault(s.key, s)
            size, cin = after, width
    return list(out.values())


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


#: ``min``: the least disturbed run (other processes and interrupts only ever
#: add time, so on a shared machine it is the stable estimate); ``p10``: the
#: 10th percentile; ``median``.
STATISTICS = ("min", "p10", "median")


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

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.flat = spec.kind == "head"
        self.cout = spec.n_classes if self.flat else spec.cout
        self.stride, self.out = max(1, spec.stride), spec.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, :1, :: self.stride, :: self.stride][:, :, : self.out, : self.out]
        if self.flat:
            return y.reshape(x.shape[0], -1)[:, :1].expand(x.shape[0], self.cout)
        return y.expand(x.shape[0], self.cout, self.out, self.out)


def make_runner(model: nn.Module, input_shape: Tuple[int, ...], engine: str = "torch", threads: int = 1) -> Callable[[], Any]:
    """A zero-argument callable running one batch of ``model`` on this CPU
    (torch eager, or an onnxruntime session with ``threads`` intra-op threads,
    one inter-op thread and sequential execution). Time torch runners inside
    :func:`time_interleaved` (it sets the thread count and inference mode)."""
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
    load, so the tables entries and the whole networks they are compared with
    are measured under the same conditions, and the minimum over calls spread
    across the whole measurement finds an undisturbed slot for each.
    """
    from tqdm import tqdm

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
        for r in tqdm(range(rounds), desc=desc, disable=not progress, unit="round", leave=False):
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
    """Latency (ms) of one batch-1 forward pass of ``model`` on this CPU: the
    minimum (default) of ``repeats`` timed runs after ``warmup``."""
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
    network cannot tilt or shift it); a pure
    ratio when the points carry no trend."""
    from scipy.stats import theilslopes

    x, y = np.asarray(sums, float), np.asarray(measured, float)
    scale, offset = (theilslopes(y, x, method="joint")[:2] if len(x) >= 3 and np.ptp(x) > 0 else (np.nan, np.nan))
    if not scale > 0 or not np.isfinite(offset):
        scale, offset = float(np.median(y / x)), 0.0
    return {"scale": float(scale), "offset": float(offset), "n": int(len(x))}


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


class LatencyLUT:
    """Per-shape latencies (ms) for one or more engines, plus how they were measured.

    ``entries[key][engine]`` is the latency of the layer whose
    :attr:`LayerSpec.key` is ``key``, timed alone with an input of its real
    shape; for onnxruntime the cost of one session call with the same input
    and output shapes (:class:`_IOProxy`, ``meta["call_overhead_ms"]``) is
    subtracted, because a whole network pays it once, not once per layer.
    :meth:`predict` returns ``scale * sum(entries) + offset`` per engine: the
    fixed term ``offset`` is the per-network overhead (one call, the framework's
    dispatch between layers) and ``scale`` the remaining systematic difference
    between isolated and chained layers, both fitted by ``build(calibrate=n)``
    on ``n`` whole random sub-networks timed interleaved with the entries
    (``meta["calibration"]``).
    """

    def __init__(self, entries: Mapping[str, Mapping[str, float]], meta: Optional[Mapping[str, Any]] = None):
        self.entries: Dict[str, Dict[str, float]] = {k: dict(v) for k, v in entries.items()}
        self.meta: Dict[str, Any] = dict(meta or {})

    @property
    def engines(self) -> List[str]:
        return list(self.meta.get("engines", ENGINES))

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def build(
        cls,
        arch: SupernetConfig | str | Mapping[str, Any],
        engines: Sequence[str] = ENGINES,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 200,
        progress: bool = True,
        calibrate: int = 20,
        statistic: str = "min",
        seed: int = 0,
        rounds: Optional[int | Mapping[str, int]] = None,
    ) -> "LatencyLUT":
        """Measure every layer shape of the supernet's space on this machine,
        interleaved with ``calibrate`` whole random sub-networks for the sum's
        correction."""
        from tqdm import tqdm

        from .supernet import build_subnet

        arch = supernet_config(arch)
        for e in engines:
            if e not in ENGINES:
                raise ValueError(f"unknown latency engine {e!r}; choose one of {ENGINES}")
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")
        specs = space_layer_specs(arch)
        configs = cls._calibration_configs(arch, calibrate, seed) if calibrate > 0 else []
        torch.manual_seed(0)
        runners: List[Callable[[], Any]] = []
        slots: Dict[Tuple[str, str, str], int] = {}  # (what, key, engine) -> runner index
        for spec in tqdm(specs, desc="latency table: prepare layers", disable=not progress, unit="layer", leave=False):
            module = spec.build().eval()
            shape = (1, spec.cin, spec.size, spec.size)
            for e in engines:
                slots[("layer", spec.key, e)] = len(runners)
                runners.append(make_runner(module, shape, e, threads))
                if e == "onnxruntime":
                    slots[("io", spec.key, e)] = len(runners)
                    runners.append(make_runner(_IOProxy(spec).eval(), shape, e, threads))
        for i, cfg in enumerate(tqdm(configs, desc="latency table: prepare networks", disable=not progress, unit="net", leave=False)):
            model = build_subnet(arch, cfg).eval()
            shape = (1, arch.in_channels, cfg["resolution"], cfg["resolution"])
            for e in engines:
                slots[("net", str(i), e)] = len(runners)
                runners.append(make_runner(model, shape, e, threads))
        ms = np.empty(len(runners))
        for e in engines:  # each engine's layers and networks interleaved together
            idx = [i for (what, key, eng), i in slots.items() if eng == e]
            ms[idx] = time_interleaved([runners[i] for i in idx], threads, warmup, repeats, rounds_for(e, repeats, rounds), statistic, seed, progress, f"latency table ({e})")
        entries: Dict[str, Dict[str, float]] = {}
        overhead: Dict[str, float] = {}
        for e in engines:
            io = []
            for spec in specs:
                t = float(ms[slots[("layer", spec.key, e)]])
                if ("io", spec.key, e) in slots:
                    o = float(ms[slots[("io", spec.key, e)]])
                    io.append(o)
                    # never below a tenth of the raw time: noise must not make a layer free
                    t = max(t - o, 0.1 * t)
                entries.setdefault(spec.key, {})[e] = t
            if io:
                overhead[e] = float(np.median(io))
        meta = {
            "format": FORMAT_VERSION,
            "arch": arch.to_dict(),
            "arch_digest": arch.digest(),
            "engines": list(engines),
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "rounds": {e: rounds_for(e, repeats, rounds) for e in engines},
            "statistic": statistic,
            "call_overhead_ms": overhead,
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
        lut = cls(entries, meta)
        if configs:
            calibration = {}
            for e in engines:
                sums = [lut.predict(arch, cfg, e, raw=True) for cfg in configs]
                measured = [float(ms[slots[("net", str(i), e)]]) for i in range(len(configs))]
                calibration[e] = fit_calibration(sums, measured)
            lut.meta["calibration"] = calibration
        log.info("latency table: %d layer shapes measured with %s", len(entries), list(engines))
        return lut

    @staticmethod
    def _calibration_configs(arch: SupernetConfig, n: int, seed: int) -> List[Dict[str, Any]]:
        from .supernet import OFAMobileNetV3

        space = OFAMobileNetV3.space_for(arch)
        rng = np.random.default_rng(seed)
        configs = [space.sample(rng) for _ in range(max(2, n))]
        # the extremes make the fit an interpolation over the whole range
        configs[0], configs[1] = OFAMobileNetV3.extreme_config(arch, "min"), OFAMobileNetV3.extreme_config(arch, "max")
        return configs

    def calibrate(
        self,
        arch: SupernetConfig | str | Mapping[str, Any],
        n_subnets: int = 20,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 200,
        statistic: str = "min",
        seed: int = 0,
        progress: bool = True,
        rounds: Optional[int | Mapping[str, int]] = None,
    ) -> Dict[str, Dict[str, float]]:
        """Re-fit ``measured = scale * table_sum + offset`` on ``n_subnets``
        random whole sub-networks timed now on this machine, per engine."""
        from .supernet import build_subnet

        arch = supernet_config(arch)
        configs = self._calibration_configs(arch, n_subnets, seed)
        torch.manual_seed(seed)
        runners, which = [], []
        for cfg in configs:
            model = build_subnet(arch, cfg).eval()
            shape = (1, arch.in_channels, cfg["resolution"], cfg["resolution"])
            for e in self.engines:
                which.append(e)
                runners.append(make_runner(model, shape, e, threads))
        calibration = {}
        for e in self.engines:
            mine = [r for r, w in zip(runners, which) if w == e]
            measured = [float(t) for t in time_interleaved(mine, threads, warmup, repeats, rounds_for(e, repeats, rounds), statistic, seed, progress, f"latency calibration ({e})")]
            sums = [self.predict(arch, cfg, e, raw=True) for cfg in configs]
            calibration[e] = fit_calibration(sums, measured)
        self.meta["calibration"] = calibration
        return calibration

    def predict(self, arch: SupernetConfig | str | Mapping[str, Any], config: Mapping[str, Any], engine: str = "torch", raw: bool = False) -> float:
        """Predicted latency (ms): the sum of the table entries of the
        sub-network's layers, with the whole-network calibration unless ``raw``."""
        total = sum(self.lookup(spec, engine) for spec in layer_specs(supernet_config(arch), config))
        cal = (self.meta.get("calibration") or {}).get(engine)
        if raw or not cal:
            return total
        return float(cal["scale"]) * total + float(cal["offset"])

    def lookup(self, spec: LayerSpec, engine: str = "torch") -> float:
        try:
            row = self.entries[spec.key]
        except KeyError:
            raise LUTError(
                f"the latency table has no entry for layer {spec.key!r}; it was built for another supernet shape "
                f"(table arch digest {self.meta.get('arch_digest')}) - rebuild it with `hwaml-ofa-nas lut build`"
            ) from None
        if engine not in row:
            raise LUTError(f"the latency table was measured with {sorted(row)}, not {engine!r}")
        return float(row[engine])

    # -- files -----------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return {"meta": self.meta, "entries": self.entries}

    def save(self, path: str | Path) -> Path:
        """Write YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=True))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyLUT":
        """Read a table; malformed files raise :class:`LUTError` naming file and line."""
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text)
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
        for key, row in data["entries"].items():
            if not isinstance(row, dict) or not all(isinstance(v, (int, float)) for v in row.values()):
                raise LUTError(f"{path}: entry {key!r} must map engine names to latencies in ms, got {row!r}")
        return cls(data["entries"], data.get("meta") or {})

    def matches(self, arch: SupernetConfig) -> bool:
        return self.meta.get("arch_digest") == arch.digest()


def load_or_build(
    path: Optional[str | Path],
    arch: SupernetConfig,
    engines: Sequence[str],
    threads: int,
    warmup: int,
    repeats: int,
    progress: bool = True,
    calibrate: int = 20,
    statistic: str = "min",
    rounds: Optional[int | Mapping[str, int]] = None,
) -> Tuple[LatencyLUT, Path]:
    """The table at ``path`` (default: the per-host cache), built and saved first if missing."""
    path = Path(path) if path else default_lut_path(arch, threads)
    if path.is_file():
        lut = LatencyLUT.load(path)
        if lut.meta.get("arch_digest") not in (None, arch.digest()):
            raise LUTError(f"{path} was built for another supernet shape (digest {lut.meta.get('arch_digest')}, this one is {arch.digest()}); delete it or choose another path")
        return lut, path
    log.info("latency table %s is missing: measuring it on this machine", path)
    lut = LatencyLUT.build(arch, engines, threads, warmup, repeats, progress, calibrate, statistic, rounds=rounds)
    lut.save(path)
    return lut, path
