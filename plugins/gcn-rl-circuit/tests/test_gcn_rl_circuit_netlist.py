"""Netlist templates: parse errors name the line; shipped templates parse and render."""

import pytest

from hwaml_gcn_rl_circuit.circuits import CIRCUITS, get_circuit
from hwaml_gcn_rl_circuit.netlist import TemplateError, parse_template

GOOD = """* test deck
${models}
Vdd vdd 0 dc ${vdd}
M1 out in 0 0 nch W=${w1} L=${l1}
R1 vdd out ${rf}
.op
.end
"""


def parse(text):
    return parse_template(text, "deck.cir", ["w1", "l1", "rf"], ["models", "vdd"])


def test_good_template_extracts_elements():
    tpl = parse(GOOD)
    kinds = {e.name: (e.kind, e.params) for e in tpl.elements}
    assert kinds["M1"] == ("nmos", ("w1", "l1"))
    assert kinds["R1"] == ("resistor", ("rf",))
    assert kinds["Vdd"][0] == "vsource"
    text = tpl.render({"models": "* m", "vdd": 1.8, "w1": 1e-6, "l1": 1.8e-7, "rf": 1000.0})
    assert "W=1e-06 L=1.8e-07" in text and "${" not in text


@pytest.mark.parametrize(
    "line, message",
    [
        ("M2 out in 0 0 nch W=${w9} L=${l1}", "unknown placeholder ${w9}"),
        ("M2 out in 0 0 nch W=${w1 L=${l1}", "malformed placeholder"),
        ("M2 out in 0 nch", "needs 4 nets"),
        ("M2 out in 0 0 nfet W=${w1} L=${l1}", "model 'nfet'"),
        ("Q1 c b e npn", "unknown element 'Q1'"),
        ("M1 x in 0 0 nch W=${w1} L=${l1}", "already defined on line 4"),
    ],
)
def test_bad_line_is_named(line, message):
    lines = GOOD.splitlines()
    lines.insert(4, line)  # becomes line 5
    with pytest.raises(TemplateError) as err:
        parse("\n".join(lines))
    assert "deck.cir, line 5" in str(err.value)
    assert message in str(err.value)


def test_missing_end_and_close_match_hint():
    with pytest.raises(TemplateError, match="missing .end"):
        parse(GOOD.replace(".end\n", ""))
    with pytest.raises(TemplateError, match=r"did you mean \$\{rf\}"):
        parse(GOOD.replace("${rf}", "${rff}"))


def test_render_names_missing_value():
    tpl = parse(GOOD)
    with pytest.raises(TemplateError, match=r"line 5: no value given for \$\{rf\}"):
        tpl.render({"models": "", "vdd": 1.0, "w1": 1e-6, "l1": 1e-7})


@pytest.mark.parametrize("name", sorted(CIRCUITS))
def test_shipped_templates_parse(name):
    circuit = get_circuit(name)
    used = {p for e in circuit.template().elements for p in e.params}
    assert used == set(circuit.param_names)


def test_user_template_file_is_checked(tmp_path):
    from hwaml_gcn_rl_circuit.evaluator import CircuitEvaluator

    bad = tmp_path / "mine.cir"
    bad.write_text(GOOD.replace("${rf}", "${rq}"))
    with pytest.raises(TemplateError, match="mine.cir, line 5: unknown placeholder"):
        CircuitEvaluator("two_stage_tia", "gf180mcu", template=str(bad))
