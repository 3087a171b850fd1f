"""Latency look-up tables measured on the user's own device.

OFA predicts a sub-network's latency by summing the measured latencies of its
blocks, each looked up by shape (input size, widths, kernel, stride, ...).
:meth:`LatencyLUT.build` enumerates every block shape the supernet's space can
produce, times each one on this machine with torch (eager, CPU) and with
onnxruntime, and stores the medians in YAML or JSON; :meth:`LatencyLUT.predict`
sums them for a sub-network. ``hwaml-ofa-nas lut build`` does this from the
shell, and ``hwaml-ofa-nas lut check`` compares predictions with whole-network
measurements.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .supernet import LayerSpec, SupernetConfig, conv_out, layer_specs, supernet_config
from .elastic import make_divisible

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["ENGINES", "LatencyLUT", "LUTError", "space_layer_specs", "measure_latency_ms", "default_lut_path"]

ENGINES = ("torch", "onnxruntime")
FORMAT_VERSION = 1


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


STATISTICS = ("min", "median")


def _time_ms(fn: Callable[[], Any], warmup: int, repeats: int, statistic: str) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    # The minimum is the least disturbed run: other processes and interrupts
    # only ever add time, so on a shared machine it is the stable estimate.
    return float(min(times) if statistic == "min" else statistics.median(times))


def measure_latency_ms(
    model: nn.Module,
    input_shape: Tuple[int, ...],
    engine: str = "torch",
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    statistic: str = "min",
) -> float:
    """Latency (ms) of one batch-1 forward pass of ``model`` on this CPU: the
    minimum (default) or median of ``repeats`` timed runs after ``warmup``."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")
    model.eval()
    x = torch.randn(*input_shape)
    if engine == "torch":
        with _Threads(threads), torch.inference_mode():
            return _time_ms(lambda: model(x), warmup, repeats, statistic)
    if engine == "onnxruntime":
        import onnxruntime as ort

        from .export import onnx_bytes

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(onnx_bytes(model, input_shape), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        feed = {name: x.numpy()}
        return _time_ms(lambda: sess.run(None, feed), warmup, repeats, statistic)
    raise ValueError(f"unknown latency engine {engine!r}; choose one of {ENGINES}")


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------


class LatencyLUT:
    """Per-shape latencies (ms) for one or more engines, plus how they were measured.

    ``entries[key][engine]`` is the latency of the layer whose
    :attr:`LayerSpec.key` is ``key``, timed alone. A whole network runs its
    layers back to back with colder caches and a little framework overhead per
    call, so the sum of isolated layers is biased low; ``build(calibrate=n)``
    times ``n`` whole random sub-networks and fits ``latency = scale * sum +
    offset`` per engine (kept in ``meta["calibration"]``), which :meth:`predict`
    applies unless ``raw=True``.
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
        repeats: int = 50,
        progress: bool = True,
        calibrate: int = 8,
        statistic: str = "min",
        seed: int = 0,
    ) -> "LatencyLUT":
        """Measure every layer shape of the supernet's space on this machine
        (and ``calibrate`` whole random sub-networks for the sum's correction)."""
        from tqdm import tqdm

        arch = supernet_config(arch)
        for e in engines:
            if e not in ENGINES:
                raise ValueError(f"unknown latency engine {e!r}; choose one of {ENGINES}")
        specs = space_layer_specs(arch)
        entries: Dict[str, Dict[str, float]] = {}
        torch.manual_seed(0)
        for spec in tqdm(specs, desc="latency table", disable=not progress, unit="layer"):
            module = spec.build().eval()
            shape = (1, spec.cin, spec.size, spec.size)
            entries[spec.key] = {e: measure_latency_ms(module, shape, e, threads, warmup, repeats, statistic) for e in engines}
        meta = {
            "format": FORMAT_VERSION,
            "arch": arch.to_dict(),
            "arch_digest": arch.digest(),
            "engines": list(engines),
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "statistic": statistic,
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
        if calibrate > 0:
            lut.calibrate(arch, calibrate, threads, warmup, repeats, statistic, seed, progress)
        log.info("latency table: %d layer shapes measured with %s", len(entries), list(engines))
        return lut

    def calibrate(
        self,
        arch: SupernetConfig | str | Mapping[str, Any],
        n_subnets: int = 8,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 50,
        statistic: str = "min",
        seed: int = 0,
        progress: bool = True,
    ) -> Dict[str, Dict[str, float]]:
        """Fit ``measured = scale * table_sum + offset`` on ``n_subnets`` random
        whole sub-networks timed on this machine, per engine."""
        import numpy as np
        from tqdm import tqdm

        from .supernet import OFAMobileNetV3, build_subnet

        arch = supernet_config(arch)
        space = OFAMobileNetV3.space_for(arch)
        rng = np.random.default_rng(seed)
        configs = [space.sample(rng) for _ in range(max(2, n_subnets))]
        # the extremes make the fit an interpolation over the whole range
        configs[0], configs[1] = OFAMobileNetV3.extreme_config(arch, "min"), OFAMobileNetV3.extreme_config(arch, "max")
        sums: Dict[str, List[float]] = {e: [] for e in self.engines}
        measured: Dict[str, List[float]] = {e: [] for e in self.engines}
        torch.manual_seed(seed)
        for cfg in tqdm(configs, desc="latency calibration", disable=not progress, unit="net"):
            model = build_subnet(arch, cfg).eval()
            shape = (1, arch.in_channels, cfg["resolution"], cfg["resolution"])
            for e in self.engines:
                sums[e].append(self.predict(arch, cfg, e, raw=True))
                measured[e].append(measure_latency_ms(model, shape, e, threads, warmup, repeats, statistic))
        calibration = {}
        for e in self.engines:
            x, y = np.asarray(sums[e]), np.asarray(measured[e])
            scale, offset = np.polyfit(x, y, 1)
            if not scale > 0 or not np.isfinite(offset):
                # noise swamped the trend (a loaded machine): fall back to a pure ratio
                scale, offset = float(y.sum() / x.sum()), 0.0
            calibration[e] = {"scale": float(scale), "offset": float(offset), "n": len(configs)}
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
    calibrate: int = 8,
    statistic: str = "min",
) -> Tuple[LatencyLUT, Path]:
    """The table at ``path`` (default: the per-host cache), built and saved first if missing."""
    path = Path(path) if path else default_lut_path(arch, threads)
    if path.is_file():
        lut = LatencyLUT.load(path)
        if lut.meta.get("arch_digest") not in (None, arch.digest()):
            raise LUTError(f"{path} was built for another supernet shape (digest {lut.meta.get('arch_digest')}, this one is {arch.digest()}); delete it or choose another path")
        return lut, path
    log.info("latency table %s is missing: measuring it on this machine", path)
    lut = LatencyLUT.build(arch, engines, threads, warmup, repeats, progress, calibrate, statistic)
    lut.save(path)
    return lut, path
