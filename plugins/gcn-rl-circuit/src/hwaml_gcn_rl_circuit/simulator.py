"""ngspice through InSpice's shared-library API (the PySpice API, maintained fork).

One ngspice shared library lives in each process (ngspice itself is a
singleton); :class:`SpiceSimulator` loads a deck, runs it in ngspice's
background thread so that a run can be halted after ``timeout_s``, and returns
every vector of every plot as numpy arrays keyed by plot name (``op1``,
``ac1``, ``noise1`` ...).

Anything that goes wrong inside the simulator -- a deck ngspice rejects, a
singular matrix, an operating point that does not converge, a timeout, a
missing vector -- raises :class:`SimulationError` with ngspice's own message;
the evaluator turns it into a penalised figure of merit.

InSpice raises on any stderr line it does not recognise, including BSIM's
harmless "Checking parameters" and instance warnings; this wrapper classifies
stderr itself instead.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, Iterator, List, Mapping, Optional

import numpy as np

log = logging.getLogger("hwaml.gcn_rl_circuit")

# stderr lines ngspice prints for a healthy run
_BENIGN = ("warning", "note:", "checking parameters", "using ", "trying", "supplies reduced", "reference value", "no. of data rows")
# lines that mean the run did not produce a trustworthy result
_FATAL = ("error", "singular", "timestep too small", "iteration limit", "aborted", "doanalyses", "failed", "no convergence", "fatal")

_LOCK = threading.Lock()


class SimulationError(RuntimeError):
    """ngspice could not simulate the deck (message holds ngspice's words)."""


def _shared():
    # Debian's libngspice is built with OpenMP; on circuits of ten transistors its worker
    # threads only spin (and compete with the search on a small machine): one thread,
    # unless the user asked otherwise before the library loads.
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Quiet InSpice's logger: it logs every BSIM check as an error.
    logging.getLogger("InSpice").setLevel(logging.CRITICAL)
    from InSpice.Spice.NgSpice.Shared import NgSpiceShared

    return _watched(NgSpiceShared.new_instance())


def _get_running(ng):  # noqa: ANN001, ANN202
    return ng.__dict__.get("_is_running_value")


def _set_running(ng, value) -> None:  # noqa: ANN001
    # ngspice's BGThreadRunning callback stores False when its background thread starts and
    # True when it ends: the end is timestamped and signalled, so a caller waits on an event
    # instead of polling
    ng.__dict__["_is_running_value"] = value
    if value is True:
        ng.__dict__["_bg_done_at"] = time.perf_counter()
        ng.__dict__["_bg_done"].set()


def _watched(ng):  # noqa: ANN001, ANN202
    """The InSpice instance with ``_is_running`` turned into a property that signals the end of
    a background run (InSpice's callback sets that attribute from ngspice's thread)."""
    if "_bg_done" in ng.__dict__:
        return ng
    value = ng.__dict__.pop("_is_running", False)
    ng.__class__ = type("WatchedNgSpiceShared", (type(ng),), {"_is_running": property(_get_running, _set_running)})
    ng.__dict__["_bg_done"] = threading.Event()
    ng.__dict__["_bg_done_at"] = 0.0
    ng._is_running = value
    return ng


class SpiceSimulator:
    """Run decks in the process's ngspice shared library."""

    def __init__(self, timeout_s: float = 10.0, poll_s: float = 2e-4):
        self.timeout_s = float(timeout_s)
        self.poll_s = poll_s
        self.ng = _shared()
        self._seen_plots: set = set()
        self._generation = 0
        #: seconds spent inside ngspice (deck parsing, commands, analyses until the background
        #: thread ended): what a raw run of the same deck does; the rest of a trial is Python
        self.busy_s = 0.0

    def _call(self, cmd: bytes) -> int:
        t0 = time.perf_counter()
        rc = self.ng._ngspice_shared.ngSpice_Command(cmd)
        self.busy_s += time.perf_counter() - t0
        return rc

    @staticmethod
    def _fatal_lines(lines: List[str]) -> List[str]:
        bad = []
        for line in lines:
            low = line.strip().lower()
            if not low or low.startswith(_BENIGN):
                continue
            if any(k in low for k in _FATAL):
                bad.append(line.strip())
        return bad

    def simulate(self, deck: str) -> Dict[str, Dict[str, np.ndarray]]:
        """Simulate one deck; return ``{plot_name: {vector_name: array}}``.

        :raises SimulationError: on any simulator error, non-convergence or timeout.
        """
        from InSpice.Spice.NgSpice.Shared import NgSpiceCommandError

        ng = self.ng
        with _LOCK:
            try:
                ng.destroy("all")
            except (NgSpiceCommandError, NameError):  # nothing to destroy on a fresh library
                pass
            self._seen_plots = set()
            self._generation += 1
            if getattr(self, "_loaded_key", None) is not None:
                ng._ngspice_shared.ngSpice_Command(b"remcirc")
                self._loaded_key = None
            self._load_checked(deck)
            # ngspice's BGThreadRunning callback stores "no run in progress" in
            # ng._is_running: False when the background thread starts, True when it ends.
            ng._is_running = None
            try:
                ng.exec_command("bg_run")
            except NgSpiceCommandError:
                pass  # classified below from the collected stderr
            t0 = time.perf_counter()
            while ng._is_running is not True:
                if time.perf_counter() - t0 > self.timeout_s:
                    # a raw library call: it returns a status code and raises nothing
                    ng._ngspice_shared.ngSpice_Command(b"bg_halt")
                    while ng._is_running is not True and time.perf_counter() - t0 < self.timeout_s + 5.0:
                        time.sleep(self.poll_s)
                    raise SimulationError(f"ngspice timed out after {self.timeout_s:g} s")
                time.sleep(self.poll_s)
            bad = self._fatal_lines(list(ng._stderr)) + [l for l in self._fatal_lines(list(ng._stdout)) if "error" in l.lower()]
            if bad:
                raise SimulationError("ngspice: " + "; ".join(bad[:3]))
            out: Dict[str, Dict[str, np.ndarray]] = {}
            for name in ng.plot_names:
                if name == "const":
                    continue
                plot = ng.plot(None, name)
                out[name] = {k: np.array(v._data) for k, v in plot.items()}
        if not out:
            raise SimulationError("ngspice produced no results")
        for plot_name, vecs in out.items():
            for k, v in vecs.items():
                if v.size and not np.all(np.isfinite(v)):
                    raise SimulationError(f"ngspice returned non-finite values in {plot_name}.{k}")
        return out


    def _load_checked(self, deck: str) -> None:
        """Load ``deck`` into ngspice; a rejected deck is a SimulationError naming ngspice's complaint.

        The deck goes to ``ngSpice_Circ`` directly as compact lines (comments dropped, ``+``
        continuation lines joined -- what ngspice's reader does itself), so a deck with a few
        BSIM4 cards is ~60 C strings instead of ~1400 (InSpice's ``load_circuit`` builds one
        Python/cffi string per line: several milliseconds per load on the PDK decks).
        """
        from InSpice.Spice.NgSpice.Shared import FFI, ffi

        ng = self.ng
        lines = compact_deck(deck)
        keep = [ffi.new("char[]", line.encode("utf8")) for line in lines] + [ffi.new("char[]", b""), FFI.NULL]
        arr = ffi.new("char *[]", keep)
        ng.clear_output()
        t0 = time.perf_counter()
        rc = ng._ngspice_shared.ngSpice_Circ(arr)
        self.busy_s += time.perf_counter() - t0
        circuit_err = self._fatal_lines(ng._stdout) + self._fatal_lines(ng._stderr)
        if rc or circuit_err:
            raise SimulationError(f"ngspice rejected the deck: {circuit_err[0] if circuit_err else f'ngSpice_Circ returned {rc}'}")

    # -- a circuit kept loaded, resized with ``alter`` ---------------------------------

    def load(self, deck: str, key: object) -> None:
        """Make ``deck`` the loaded circuit (removing the previous one); ``key`` names it."""
        ng = self.ng
        with _LOCK:
            self._release()
            if getattr(self, "_loaded_key", None) is not None:
                self._call(b"remcirc")
            self._loaded_key = None
            ng._stdout, ng._stderr = [], []
            self._load_checked(deck)
            self._loaded_key = key

    @property
    def loaded_key(self) -> object:
        return getattr(self, "_loaded_key", None)

    def _clear_plots(self) -> None:
        self._call(b"destroy all")

    def command(self, cmd: str) -> None:
        """A non-analysis command on the loaded circuit (``alter``, ``option``); errors raise."""
        ng = self.ng
        with _LOCK:
            ng._stderr = []
            self._call(cmd.encode())
            bad = [l for l in ng._stderr if l.strip() and not l.strip().lower().startswith(_BENIGN)]
            if bad:
                raise SimulationError(f"ngspice: {cmd!r}: {bad[0].strip()}")

    def analysis(self, cmd: str) -> "Plot":
        """Run one analysis (``op``, ``ac dec 50 1 1g``, ``tran ...``) on the loaded circuit in
        ngspice's background thread (halted after ``timeout_s``); return its plot.

        The :class:`Plot` reads a vector from ngspice when it is first asked for (a measurement
        reads a handful of the ~70 vectors an op plot holds) and checks it is finite; the plots
        stay in ngspice until :meth:`release` (called by the next :meth:`load` and at the start
        of every trial by the bench)."""
        ng = self.ng
        with _LOCK:
            if self.loaded_key is None:
                raise SimulationError("no circuit loaded")
            ng._stdout, ng._stderr = [], []
            done = ng._bg_done
            done.clear()
            ng._is_running = None
            t0 = time.perf_counter()
            ng._ngspice_shared.ngSpice_Command(("bg_" + cmd).encode())
            if not done.wait(self.timeout_s):
                ng._ngspice_shared.ngSpice_Command(b"bg_halt")
                done.wait(5.0)
                self.busy_s += time.perf_counter() - t0
                self._release()
                raise SimulationError(f"ngspice timed out after {self.timeout_s:g} s in {cmd.split()[0]}")
            self.busy_s += ng._bg_done_at - t0
            bad = self._fatal_lines(list(ng._stderr)) + [l for l in self._fatal_lines(list(ng._stdout)) if "error" in l.lower()]
            if bad:
                self._release()
                raise SimulationError(f"ngspice ({cmd.split()[0]}): " + "; ".join(bad[:3]))
            names = ng.plot_names
            name = names[0] if names else None
            if not name or name == "const" or name in self._seen_plots:
                raise SimulationError(f"ngspice produced no results for {cmd!r}")
            plots = [name]
            if cmd.split()[0].lower() == "noise":
                # noise writes two plots: the spectrum (last but one) and the integrated totals (last)
                plots += [n for n in names[1:] if n.startswith("noise") and n not in self._seen_plots][:1]
            self._seen_plots.update(plots)
            return Plot(self, plots, cmd.split()[0], self._generation)

    def release(self) -> None:
        """Free every plot of the loaded circuit's analyses (their :class:`Plot` objects keep
        only the vectors already read)."""
        with _LOCK:
            self._release()

    def _release(self) -> None:
        self._clear_plots()
        self._seen_plots = set()
        self._generation += 1

    def read_vector(self, plot: str, name: str) -> Optional[np.ndarray]:
        """One vector of one plot as a numpy array (a copy); ``None`` if it does not exist."""
        from InSpice.Spice.NgSpice.Shared import FFI, ffi

        info = self.ng._ngspice_shared.ngGet_Vec_Info(f"{plot}.{name}".encode("utf8"))
        if info == FFI.NULL:
            return None
        n = info.v_length
        if info.v_compdata == FFI.NULL:
            if info.v_realdata == FFI.NULL:
                return None
            return np.frombuffer(ffi.buffer(info.v_realdata, n * 8), dtype=np.float64).copy()
        raw = np.frombuffer(ffi.buffer(info.v_compdata, n * 16), dtype=np.float64)
        return raw[0::2] + 1j * raw[1::2]

    def vector_names(self, plot: str) -> List[str]:
        from InSpice.Spice.NgSpice.Shared import FFI, ffi

        arr = self.ng._ngspice_shared.ngSpice_AllVecs(plot.encode("utf8"))
        out, i = [], 0
        while arr[i] != FFI.NULL:
            out.append(ffi.string(arr[i]).decode("utf8"))
            i += 1
        return out


class Plot(Mapping[str, np.ndarray]):
    """The vectors of one analysis (noise: its two plots), read from ngspice on first access.

    ``plot["out"]`` copies the vector out of ngspice (once) and raises :class:`SimulationError`
    if it holds a non-finite value; after the simulator released the plots only vectors
    already read are available (a SimulationError names the others)."""

    def __init__(self, sim: "SpiceSimulator", plots: List[str], analysis: str, generation: int):
        self._sim, self._plots, self._analysis, self._generation = sim, plots, analysis, generation
        self._cache: Dict[str, np.ndarray] = {}
        self._names: Optional[List[str]] = None

    def _live(self) -> bool:
        return self._sim._generation == self._generation

    def __getitem__(self, name: str) -> np.ndarray:
        v = self._cache.get(name)
        if v is not None:
            return v
        if not self._live():
            raise SimulationError(f"{self._analysis}: vector {name!r} read after the plot was released")
        with _LOCK:
            for p in self._plots:
                v = self._sim.read_vector(p, name)
                if v is not None:
                    break
        if v is None:
            raise KeyError(name)
        if v.size and not np.all(np.isfinite(v)):
            raise SimulationError(f"ngspice returned non-finite values in {self._analysis}: {name}")
        self._cache[name] = v
        return v

    def __contains__(self, name: object) -> bool:
        try:
            self[name]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def _all_names(self) -> List[str]:
        if self._names is None:
            if not self._live():
                return list(self._cache)
            with _LOCK:
                names: List[str] = []
                for p in self._plots:
                    names += [n for n in self._sim.vector_names(p) if n not in names]
            self._names = names
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._all_names())

    def __len__(self) -> int:
        return len(self._all_names())


def compact_deck(deck: str) -> List[str]:
    """The deck as ngspice's reader sees it: the title line, then each statement on one line
    (``*`` comment lines and blank lines dropped, ``+`` continuation lines joined)."""
    lines = deck.splitlines()
    out = lines[:1]
    for line in lines[1:]:
        s = line.strip()
        if not s or s.startswith("*"):
            continue
        if s.startswith("+") and len(out) > 1:
            out[-1] += " " + s[1:]
        else:
            out.append(line)
    return out


_DEFAULT: Optional[SpiceSimulator] = None


def default_simulator(timeout_s: float = 10.0) -> SpiceSimulator:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SpiceSimulator(timeout_s)
    _DEFAULT.timeout_s = float(timeout_s)
    return _DEFAULT
