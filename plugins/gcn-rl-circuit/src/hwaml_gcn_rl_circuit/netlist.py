"""Parameterised SPICE netlist templates.

A template is an ordinary SPICE deck whose sizes and technology values are
``${name}`` placeholders::

    M1 out in 0 0 nch W=${w_in} L=${l_in}
    Rf in out ${rf}
    ${models}

:func:`parse_template` checks the deck before anything is simulated -- unknown
placeholders, unterminated ``${``, element lines with too few nodes, MOSFETs
whose model is neither ``nch`` nor ``pch``, a missing ``.end`` -- and raises
:class:`TemplateError` naming the file and line. It also extracts the elements
(name, kind, nets, which sizing parameters they use), which is what the circuit
graph is built from. :meth:`Template.render` substitutes values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: element letter -> (kind, number of nets)
ELEMENT_NETS = {
    "m": ("mosfet", 4),
    "r": ("resistor", 2),
    "c": ("capacitor", 2),
    "l": ("inductor", 2),
    "v": ("vsource", 2),
    "i": ("current_source", 2),
    "e": ("vcvs", 4),
    "g": ("vccs", 4),
    "d": ("diode", 2),
}
MOS_MODELS = {"nch": "nmos", "pch": "pmos"}
#: nets that every device touches; they carry no topology, so the graph skips them
SUPPLY_NETS = frozenset({"0", "gnd", "vdd", "vss"})


class TemplateError(ValueError):
    """A malformed netlist template; the message names the file and line."""

    def __init__(self, source: str, line: int, message: str):
        self.source, self.line = source, line
        super().__init__(f"{source}, line {line}: {message}")


@dataclass(frozen=True)
class Element:
    """One SPICE element of a template."""

    name: str
    kind: str  # nmos, pmos, resistor, capacitor, current_source, vsource, ...
    nets: Tuple[str, ...]
    params: Tuple[str, ...]  # sizing parameters it uses, in order of appearance
    line: int


@dataclass
class Template:
    """A checked template: its lines, elements and placeholder names."""

    source: str
    text: str
    elements: List[Element]
    placeholders: List[str]
    _lines: List[str] = field(repr=False, default_factory=list)

    def render(self, values: Mapping[str, object]) -> str:
        """Substitute every placeholder; a missing value is an error naming it and its line."""
        out = []
        for number, line in enumerate(self._lines, start=1):

            def sub(m: "re.Match[str]") -> str:
                name = m.group(1)
                if name not in values:
                    raise TemplateError(self.source, number, f"no value given for ${{{name}}}")
                v = values[name]
                return f"{v:.6g}" if isinstance(v, float) else str(v)

            out.append(PLACEHOLDER.sub(sub, line))
        return "\n".join(out) + "\n"

    def sized_elements(self, sizing: Iterable[str]) -> List[Element]:
        names = set(sizing)
        return [e for e in self.elements if any(p in names for p in e.params)]


def _logical_lines(text: str) -> List[Tuple[int, str]]:
    """Join ``+`` continuation lines, keeping the number of the first physical line."""
    out: List[Tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(";", 1)[0].rstrip()  # ngspice's inline comment
        stripped = line.strip()
        if stripped.startswith("+") and out:
            n0, prev = out[-1]
            out[-1] = (n0, prev + " " + stripped[1:].strip())
        else:
            out.append((number, line))
    return out


def parse_template(text: str, source: str, sizing: Sequence[str], variables: Sequence[str]) -> Template:
    """Check a template and extract its elements.

    :param text: The deck.
    :param source: Its name for error messages (file name).
    :param sizing: Names of the sizing parameters (the search space).
    :param variables: Other placeholders the caller fills (technology, test bench).
    :raises TemplateError: naming the line of the first problem.
    """
    known = set(sizing) | set(variables)
    sizing_set = set(sizing)
    elements: List[Element] = []
    seen_names: Dict[str, int] = {}
    placeholders: List[str] = []
    has_end = False
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise TemplateError(source, 1, "the first line of a SPICE deck is its title and must not be empty")
    for number, raw in enumerate(lines, start=1):
        # placeholder syntax is checked per physical line
        stripped_ph = PLACEHOLDER.sub("", raw)
        if "${" in stripped_ph:
            raise TemplateError(source, number, "unterminated or malformed placeholder (expected ${name})")
        for name in PLACEHOLDER.findall(raw):
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean ${{{close[0]}}}?)" if close else ""
                raise TemplateError(source, number, f"unknown placeholder ${{{name}}}{hint}")
            if name not in placeholders:
                placeholders.append(name)
    for number, line in _logical_lines(text)[1:]:  # line 1 is the title
        s = line.strip()
        if not s or s.startswith("*"):
            continue
        low = s.lower()
        if low.startswith("."):
            if low.split()[0] == ".end":
                has_end = True
            continue
        if low.startswith("${"):  # a whole-line placeholder such as ${models}
            continue
        tokens = s.split()
        letter = tokens[0][0].lower()
        if letter not in ELEMENT_NETS:
            raise TemplateError(source, number, f"unknown element {tokens[0]!r} (supported: {', '.join(sorted(ELEMENT_NETS)).upper()})")
        kind, n_nets = ELEMENT_NETS[letter]
        need = 1 + n_nets + (1 if letter in "mrclvieg" else 0)
        if letter == "d":
            need = 4
        if len(tokens) < need:
            raise TemplateError(source, number, f"{kind} {tokens[0]} needs {n_nets} nets and a value/model, got {' '.join(tokens[1:]) or 'nothing'}")
        name = tokens[0].lower()
        if name in seen_names:
            raise TemplateError(source, number, f"element {tokens[0]} is already defined on line {seen_names[name]}")
        seen_names[name] = number
        nets = tuple(t.lower() for t in tokens[1 : 1 + n_nets])
        if letter == "m":
            model = tokens[5].lower()
            if model not in MOS_MODELS:
                raise TemplateError(source, number, f"MOSFET {tokens[0]} uses model {tokens[5]!r}; templates use 'nch' or 'pch'")
            kind = MOS_MODELS[model]
        params = tuple(p for p in PLACEHOLDER.findall(s) if p in sizing_set)
        elements.append(Element(tokens[0], kind, nets, params, number))
    if not has_end:
        raise TemplateError(source, len(lines), "missing .end")
    tpl = Template(source, text, elements, placeholders)
    tpl._lines = lines
    return tpl


def load_template(path, sizing: Sequence[str], variables: Sequence[str], source: Optional[str] = None) -> Template:
    from pathlib import Path

    p = Path(path)
    return parse_template(p.read_text(), source or p.name, sizing, variables)
