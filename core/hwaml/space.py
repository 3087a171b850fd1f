"""Search spaces: categorical, integer and float dimensions, nested groups,
conditional groups and per-block choice lists of variable length.

A candidate's configuration is a nested dict of plain values::

    space = SearchSpace([
        Categorical("resolution", [96, 128, 160]),
        Repeated("blocks", [Categorical("kernel", [3, 5, 7]),
                            Categorical("expand", [3, 4, 6])], lengths=[2, 3, 4]),
        Float("lr", 1e-4, 1e-1, log=True),
    ])
    cfg = space.sample(rng)   # {"resolution": 128, "blocks": [{"kernel": 5, "expand": 3}, ...], "lr": 0.003}

Every space can sample, mutate, cross over, encode to a fixed-length numeric
vector (for predictors and Gaussian processes), validate a configuration (naming
the offending key) and drive an Optuna trial define-by-run (``suggest``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "SpaceError",
    "Dimension",
    "Categorical",
    "Integer",
    "Float",
    "Group",
    "Repeated",
    "SearchSpace",
]


class SpaceError(ValueError):
    """A configuration does not belong to the space; ``key`` names where."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def _join(path: str, name: Any) -> str:
    return f"{path}.{name}" if path else str(name)


class Dimension:
    """Base class of every node of a space. ``width`` is its encoded length."""

    name: str

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def mutate(self, value: Any, rng: np.random.Generator, prob: float) -> Any:
        raise NotImplementedError

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> Any:
        return a if rng.random() < 0.5 else b

    def validate(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    @property
    def width(self) -> int:
        raise NotImplementedError

    def encode(self, value: Any) -> List[float]:
        raise NotImplementedError

    def suggest(self, trial: Any, path: str) -> Any:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        raise NotImplementedError

    def flatten(self, value: Any, path: str, out: Dict[str, Any]) -> None:
        out[path] = value


# ---------------------------------------------------------------------------
# leaves
# ---------------------------------------------------------------------------


class Categorical(Dimension):
    """A choice among a fixed list of scalar values (encoded one-hot)."""

    def __init__(self, name: str, choices: Sequence[Any]):
        if not choices:
            raise ValueError(f"Categorical {name!r} needs at least one choice")
        self.name = name
        self.choices = list(choices)

    def sample(self, rng):
        return self.choices[int(rng.integers(len(self.choices)))]

    def mutate(self, value, rng, prob):
        if len(self.choices) > 1 and rng.random() < prob:
            others = [c for c in self.choices if c != value]
            return others[int(rng.integers(len(others)))]
        return value

    def _index(self, value) -> int:
        for i, c in enumerate(self.choices):
            if isinstance(c, bool) != isinstance(value, (bool, np.bool_)):
                continue
            try:
                if c == value:
                    return i
            except (TypeError, ValueError):  # incomparable values (arrays, odd types) simply do not match
                continue
        return -1

    def validate(self, value, path):
        if self._index(value) < 0:
            raise SpaceError(path, f"{value!r} is not one of {self.choices}")
        return self.choices[self._index(value)]

    @property
    def width(self):
        return len(self.choices)

    def encode(self, value):
        vec = [0.0] * len(self.choices)
        idx = self._index(value)
        if idx >= 0:
            vec[idx] = 1.0
        return vec

    def suggest(self, trial, path):
        return trial.suggest_categorical(path, self.choices)

    def describe(self):
        return {"type": "categorical", "choices": list(self.choices)}


class _Numeric(Dimension):
    low: float
    high: float
    log: bool

    def _to_unit(self, value: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def _from_unit(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    @property
    def width(self):
        return 1

    def encode(self, value):
        return [self._to_unit(float(value))]

    def mutate(self, value, rng, prob):
        # Gaussian step in the unit (or log) interval: small moves for fine tuning,
        # with an occasional full resample so mutation can still jump.
        if rng.random() >= prob:
            return value
        if rng.random() < 0.2:
            return self.sample(rng)
        u = self._to_unit(float(value)) + rng.normal(0.0, 0.15)
        return self._snap(self._from_unit(u))

    def _snap(self, x: float):
        raise NotImplementedError


class Integer(_Numeric):
    """An integer in ``[low, high]`` on a grid of ``step`` (optionally log-uniform)."""

    def __init__(self, name: str, low: int, high: int, step: int = 1, log: bool = False):
        if high < low:
            raise ValueError(f"Integer {name!r}: high {high} < low {low}")
        if step < 1:
            raise ValueError(f"Integer {name!r}: step must be >= 1")
        if log and (low <= 0 or step != 1):
            raise ValueError(f"Integer {name!r}: log scale needs low > 0 and step 1")
        self.name, self.low, self.high, self.step, self.log = name, int(low), int(high), int(step), log
        self.high = self.low + ((self.high - self.low) // self.step) * self.step

    def _snap(self, x):
        k = round((x - self.low) / self.step)
        return int(min(self.high, max(self.low, self.low + k * self.step)))

    def sample(self, rng):
        if self.log:
            return self._snap(self._from_unit(float(rng.random())))
        n = (self.high - self.low) // self.step + 1
        return int(self.low + self.step * int(rng.integers(n)))

    def validate(self, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise SpaceError(path, f"expected an integer, got {value!r}")
        value = int(value)
        if not self.low <= value <= self.high:
            raise SpaceError(path, f"{value} is outside [{self.low}, {self.high}]")
        if (value - self.low) % self.step:
            raise SpaceError(path, f"{value} is not on the grid {self.low} + k*{self.step}")
        return value

    def suggest(self, trial, path):
        return trial.suggest_int(path, self.low, self.high, step=self.step, log=self.log)

    def describe(self):
        return {"type": "integer", "low": self.low, "high": self.high, "step": self.step, "log": self.log}


class Float(_Numeric):
    """A real number in ``[low, high]``, uniform or log-uniform."""

    def __init__(self, name: str, low: float, high: float, log: bool = False):
        if high < low:
            raise ValueError(f"Float {name!r}: high {high} < low {low}")
        if log and low <= 0:
            raise ValueError(f"Float {name!r}: log scale needs low > 0")
        self.name, self.low, self.high, self.log = name, float(low), float(high), log

    def _snap(self, x):
        return float(min(self.high, max(self.low, x)))

    def sample(self, rng):
        return self._from_unit(float(rng.random()))

    def validate(self, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SpaceError(path, f"expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            raise SpaceError(path, "is NaN")
        tol = 1e-9 * max(1.0, abs(self.high))
        if not self.low - tol <= value <= self.high + tol:
            raise SpaceError(path, f"{value} is outside [{self.low}, {self.high}]")
        return value

    def suggest(self, trial, path):
        return trial.suggest_float(path, self.low, self.high, log=self.log)

    def describe(self):
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


# ---------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------


class Group(Dimension):
    """A nested mapping of dimensions.

    ``when={"sibling": [values]}`` makes the group conditional: it is present in a
    configuration only when the sibling dimension (defined before it, in the same
    parent) takes one of the values; otherwise the key is absent.
    """

    def __init__(self, name: str, dims: Iterable[Dimension], when: Optional[Mapping[str, Sequence[Any]]] = None):
        self.name = name
        self.dims: List[Dimension] = list(dims)
        names = [d.name for d in self.dims]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"group {name!r} defines {sorted(dup)} twice")
        self.when = {k: list(v) for k, v in (when or {}).items()}
        for d in self.dims:
            if isinstance(d, Group) and d.when:
                for key in d.when:
                    if key not in names or names.index(key) > names.index(d.name):
                        raise ValueError(
                            f"conditional group {d.name!r} depends on {key!r}, which must be "
                            f"a dimension defined before it in {name!r}"
                        )

    # A child is active unless it is a conditional group whose condition fails.
    @staticmethod
    def _active(dim: Dimension, values: Mapping[str, Any]) -> bool:
        if isinstance(dim, Group) and dim.when:
            return all(values.get(k) in v for k, v in dim.when.items())
        return True

    def sample(self, rng):
        out: Dict[str, Any] = {}
        for d in self.dims:
            if self._active(d, out):
                out[d.name] = d.sample(rng)
        return out

    def mutate(self, value, rng, prob):
        out: Dict[str, Any] = {}
        for d in self.dims:
            if not self._active(d, out):
                continue
            if d.name in value:
                out[d.name] = d.mutate(value[d.name], rng, prob)
            else:  # became active through a mutated sibling
                out[d.name] = d.sample(rng)
        return out

    def crossover(self, a, b, rng):
        out: Dict[str, Any] = {}
        for d in self.dims:
            if not self._active(d, out):
                continue
            if d.name in a and d.name in b:
                out[d.name] = d.crossover(a[d.name], b[d.name], rng)
            elif d.name in a or d.name in b:
                out[d.name] = a.get(d.name, b.get(d.name))
            else:
                out[d.name] = d.sample(rng)
        return out

    def validate(self, value, path):
        if not isinstance(value, Mapping):
            raise SpaceError(path, f"expected a mapping, got {type(value).__name__}")
        known = {d.name for d in self.dims}
        for key in value:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpaceError(_join(path, key), f"unknown key{hint}; the space has {sorted(known)}")
        out: Dict[str, Any] = {}
        for d in self.dims:
            active = self._active(d, out)
            if not active:
                if d.name in value:
                    cond = ", ".join(f"{k} in {v}" for k, v in d.when.items())  # type: ignore[attr-defined]
                    raise SpaceError(_join(path, d.name), f"is only allowed when {cond}")
                continue
            if d.name not in value:
                raise SpaceError(_join(path, d.name), "is missing")
            out[d.name] = d.validate(value[d.name], _join(path, d.name))
        return out

    @property
    def width(self):
        return sum(d.width + (1 if isinstance(d, Group) and d.when else 0) for d in self.dims)

    def encode(self, value):
        vec: List[float] = []
        for d in self.dims:
            present = d.name in value
            if isinstance(d, Group) and d.when:
                vec.append(1.0 if present else 0.0)
            vec.extend(d.encode(value[d.name]) if present else [0.0] * d.width)
        return vec

    def suggest(self, trial, path):
        out: Dict[str, Any] = {}
        for d in self.dims:
            if self._active(d, out):
                out[d.name] = d.suggest(trial, _join(path, d.name))
        return out

    def describe(self):
        desc: Dict[str, Any] = {"type": "group", "dims": {d.name: d.describe() for d in self.dims}}
        if self.when:
            desc["when"] = self.when
        return desc

    def flatten(self, value, path, out):
        for d in self.dims:
            if d.name in value:
                d.flatten(value[d.name], _join(path, d.name), out)


class Repeated(Dimension):
    """A list of ``item`` groups whose length is itself a choice.

    This is the per-block choice list that NAS spaces need: a stage of depth 2, 3
    or 4, each block with its own kernel size and expand ratio. Configurations are
    lists of mappings; the encoding pads missing blocks with zeros and one-hot
    encodes the length, so the vector has a fixed size.
    """

    def __init__(self, name: str, item: Sequence[Dimension] | Group, lengths: Sequence[int]):
        self.name = name
        self.item = item if isinstance(item, Group) else Group(name, list(item))
        self.lengths = sorted(int(n) for n in lengths)
        if not self.lengths or self.lengths[0] < 0:
            raise ValueError(f"Repeated {name!r} needs non-negative lengths")
        self.max_len = self.lengths[-1]

    def _resize(self, items: List[Any], n: int, rng) -> List[Any]:
        # Shrinking keeps the first blocks (as OFA's elastic depth does).
        items = list(items[:n])
        while len(items) < n:
            items.append(self.item.sample(rng))
        return items

    def sample(self, rng):
        n = self.lengths[int(rng.integers(len(self.lengths)))]
        return [self.item.sample(rng) for _ in range(n)]

    def mutate(self, value, rng, prob):
        n = len(value)
        if len(self.lengths) > 1 and rng.random() < prob:
            n = self.lengths[int(rng.integers(len(self.lengths)))]
        items = [self.item.mutate(v, rng, prob) for v in value]
        return self._resize(items, n, rng)

    def crossover(self, a, b, rng):
        n = len(a) if rng.random() < 0.5 else len(b)
        out = []
        for i in range(n):
            if i < len(a) and i < len(b):
                out.append(self.item.crossover(a[i], b[i], rng))
            else:
                out.append(a[i] if i < len(a) else b[i])
        return out

    def validate(self, value, path):
        if not isinstance(value, (list, tuple)):
            raise SpaceError(path, f"expected a list, got {type(value).__name__}")
        if len(value) not in self.lengths:
            raise SpaceError(path, f"has {len(value)} entries; allowed lengths are {self.lengths}")
        return [self.item.validate(v, _join(path, i)) for i, v in enumerate(value)]

    @property
    def width(self):
        return len(self.lengths) + self.max_len * self.item.width

    def encode(self, value):
        vec = [1.0 if len(value) == n else 0.0 for n in self.lengths]
        for i in range(self.max_len):
            vec.extend(self.item.encode(value[i]) if i < len(value) else [0.0] * self.item.width)
        return vec

    def suggest(self, trial, path):
        n = trial.suggest_categorical(_join(path, "length"), self.lengths)
        return [self.item.suggest(trial, _join(path, i)) for i in range(n)]

    def describe(self):
        return {"type": "repeated", "lengths": self.lengths, "item": self.item.describe()}

    def flatten(self, value, path, out):
        out[_join(path, "length")] = len(value)
        for i, v in enumerate(value):
            self.item.flatten(v, _join(path, i), out)


class SearchSpace:
    """The root of a space: a group of dimensions plus typed metadata.

    ``meta`` carries what specialised searchers need beyond the generic API
    (``meta["graph"]`` for a circuit graph, ``meta["encoder"]`` for an
    architecture encoder); generic searchers ignore it.
    """

    def __init__(self, dims: Iterable[Dimension], meta: Optional[Mapping[str, Any]] = None, name: str = "space"):
        self.root = Group(name, list(dims))
        self.meta: Dict[str, Any] = dict(meta or {})
        self.name = name

    @property
    def dims(self) -> List[Dimension]:
        return self.root.dims

    def __getitem__(self, name: str) -> Dimension:
        for d in self.root.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def sample(self, rng: np.random.Generator) -> Dict[str, Any]:
        return self.root.sample(rng)

    def mutate(self, config: Mapping[str, Any], rng: np.random.Generator, prob: float = 0.1) -> Dict[str, Any]:
        return self.root.mutate(config, rng, prob)

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator) -> Dict[str, Any]:
        return self.root.crossover(a, b, rng)

    def validate(self, config: Mapping[str, Any]) -> Dict[str, Any]:
        """Return the configuration normalised, or raise :class:`SpaceError` naming the key."""
        return self.root.validate(config, "")

    def is_valid(self, config: Mapping[str, Any]) -> bool:
        try:
            self.validate(config)
            return True
        except SpaceError:
            return False

    @property
    def size(self) -> int:
        """Length of the encoded vector."""
        return self.root.width

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.asarray(self.root.encode(config), dtype=np.float32)

    def suggest(self, trial: Any) -> Dict[str, Any]:
        """Build a configuration by asking an Optuna trial, define-by-run."""
        return self.root.suggest(trial, "")

    def flatten(self, config: Mapping[str, Any]) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        self.root.flatten(config, "", out)
        return out

    def describe(self) -> Dict[str, Any]:
        return self.root.describe()["dims"]

    def __repr__(self) -> str:
        return f"SearchSpace({[d.name for d in self.dims]}, encoded size {self.size})"
