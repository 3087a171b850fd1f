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
from typing import Dict, List, Optional

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

    return NgSpiceShared.new_instance()


class SpiceSimulator:
    """Run decks in the process's ngspice shared library."""

    def __init__(self, timeout_s: float = 10.0, poll_s: float = 2e-4):
        self.timeout_s = float(timeout_s)
        self.poll_s = poll_s
        self.ng = _shared()

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
        """Load ``deck`` into ngspice; a rejected deck is a SimulationError naming ngspice's complaint."""
        from InSpice.Spice.NgSpice.Shared import NgSpiceCircuitError

        ng = self.ng
        try:
            ng.load_circuit(deck)
        except (NgSpiceCircuitError, NameError) as exc:
            raise SimulationError(f"ngspice rejected the deck: {ng.stdout.strip() or exc}") from None
        circuit_err = self._fatal_lines(ng._stdout) + self._fatal_lines(ng._stderr)
        if circuit_err:
            raise SimulationError(f"ngspice rejected the deck: {circuit_err[0]}")

    # -- a circuit kept loaded, resized with ``alter`` ---------------------------------

    def load(self, deck: str, key: object) -> None:
        """Make ``deck`` the loaded circuit (removing the previous one); ``key`` names it."""
        ng = self.ng
        with _LOCK:
            self._clear_plots()
            if getattr(self, "_loaded_key", None) is not None:
                ng._ngspice_shared.ngSpice_Command(b"remcirc")
            self._loaded_key = None
            ng._stdout, ng._stderr = [], []
            self._load_checked(deck)
            self._loaded_key = key

    @property
    def loaded_key(self) -> object:
        return getattr(self, "_loaded_key", None)

    def _clear_plots(self) -> None:
        self.ng._ngspice_shared.ngSpice_Command(b"destroy all")

    def command(self, cmd: str) -> None:
        """A non-analysis command on the loaded circuit (``alter``, ``option``); errors raise."""
        ng = self.ng
        with _LOCK:
            ng._stderr = []
            ng._ngspice_shared.ngSpice_Command(cmd.encode())
            bad = [l for l in ng._stderr if l.strip() and not l.strip().lower().startswith(_BENIGN)]
            if bad:
                raise SimulationError(f"ngspice: {cmd!r}: {bad[0].strip()}")

    def analysis(self, cmd: str) -> Dict[str, np.ndarray]:
        """Run one analysis (``op``, ``ac dec 50 1 1g``, ``tran ...``) on the loaded circuit in
        ngspice's background thread (halted after ``timeout_s``); return its plot's vectors."""
        ng = self.ng
        with _LOCK:
            if self.loaded_key is None:
                raise SimulationError("no circuit loaded")
            ng._stdout, ng._stderr = [], []
            ng._is_running = None
            ng._ngspice_shared.ngSpice_Command(("bg_" + cmd).encode())
            t0 = time.perf_counter()
            while ng._is_running is not True:
                if time.perf_counter() - t0 > self.timeout_s:
                    ng._ngspice_shared.ngSpice_Command(b"bg_halt")
                    while ng._is_running is not True and time.perf_counter() - t0 < self.timeout_s + 5.0:
                        time.sleep(self.poll_s)
                    self._clear_plots()
                    raise SimulationError(f"ngspice timed out after {self.timeout_s:g} s in {cmd.split()[0]}")
                time.sleep(self.poll_s)
            bad = self._fatal_lines(list(ng._stderr)) + [l for l in self._fatal_lines(list(ng._stdout)) if "error" in l.lower()]
            if bad:
                self._clear_plots()
                raise SimulationError(f"ngspice ({cmd.split()[0]}): " + "; ".join(bad[:3]))
            name = ng.last_plot
            if not name or name == "const":
                raise SimulationError(f"ngspice produced no results for {cmd!r}")
            plot = ng.plot(None, name)
            out = {k: np.array(v._data) for k, v in plot.items()}
            extra = {}
            if cmd.split()[0].lower() == "noise":
                # noise writes two plots: the spectrum (last but one) and the integrated totals (last)
                names = [n for n in ng.plot_names if n.startswith("noise")]
                for n in names:
                    if n != name:
                        extra = {k: np.array(v._data) for k, v in ng.plot(None, n).items()}
            self._clear_plots()
        for k, v in {**out, **extra}.items():
            if v.size and not np.all(np.isfinite(v)):
                raise SimulationError(f"ngspice returned non-finite values in {cmd.split()[0]}: {k}")
        if extra:
            return {**extra, **out}
        return out


_DEFAULT: Optional[SpiceSimulator] = None


def default_simulator(timeout_s: float = 10.0) -> SpiceSimulator:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SpiceSimulator(timeout_s)
    _DEFAULT.timeout_s = float(timeout_s)
    return _DEFAULT
