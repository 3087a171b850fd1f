"""Hydra configs compose and instantiate, and `hwaml run` runs end to end with a shrunk config."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hwaml_gan_compress import plugin
from hwaml_gan_compress.backends import GanLatencyBackend, GanMacsBackend
from hwaml_gan_compress.cli import main
from hwaml_gan_compress.evaluator import GanCompressEvaluator
from hwaml_gan_compress.evolution import GanEvolutionSearcher
from hwaml_gan_compress.training import TrainingConfig


def test_plugin_contributes_its_conf_package():
    assert plugin.config_search_path() == ["pkg://hwaml_gan_compress.conf"]


def test_every_preset_composes_and_instantiates():
    from hydra.utils import instantiate

    from hwaml.config import check_component, check_run_config
    from hwaml.testing import compose_config

    for exp, source, choices in (("gan_paired_fashion", "fashion_edges", 6), ("gan_unpaired_fashion", "fashion_classes", 5)):
        cfg = compose_config([f"experiment={exp}", "backend=[gan_macs,gan_latency]"])
        check_run_config(cfg)
        check_component(cfg.evaluator, "evaluator")
        ev = instantiate(cfg.evaluator, _convert_="all")
        assert isinstance(ev, GanCompressEvaluator) and ev.data_cfg.source == source and isinstance(ev.training, TrainingConfig)
        assert len(ev.choices[0]) == choices and ev.teacher_cfg.layers == ["model.9", "model.12", "model.15", "model.18"]
        assert cfg.constraints.macs_m < 42.8 / 9 and cfg.deploy.enabled
        assert isinstance(instantiate(cfg.searcher), GanEvolutionSearcher)
        assert isinstance(instantiate(cfg.backend.gan_macs), GanMacsBackend) and isinstance(instantiate(cfg.backend.gan_latency), GanLatencyBackend)


def test_hwaml_run_searches_under_a_macs_budget_and_deploys(tmp_path, tiny_overrides):
    overrides, cache = tiny_overrides  # the session's trained tiny evaluator: the run loads it
    run_dir = tmp_path / "run"
    env = {**os.environ, "HWAML_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hwaml.cli", "run", "experiment=gan_paired_fashion", "searcher.population_size=3", "searcher.parents=2",
           "searcher.mutations=1", "searcher.crossovers=1", "budget.trials=5", "constraints.macs_m=0.4",
           "enqueue=[{stem:1,down1:1,down2:1,blocks1:1,blocks2:1,blocks3:1,up1:1,up2:1}]",
           "plots=false", "progress=false", f"hydra.run.dir={run_dir}", *overrides, "evaluator.train_if_missing=false"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import csv

    rows = list(csv.DictReader((run_dir / "trials.csv").open()))
    assert len(rows) == 5 and any(r["status"] == "complete" for r in rows)
    for r in rows:  # over the MACs budget: recorded infeasible, never evaluated
        assert (float(r["cost.macs_m"]) <= 0.4) == (r["status"] == "complete"), r
    best = json.loads((run_dir / "best.json").read_text())
    text = json.dumps(best)
    assert "fid" in text and "macs_m" in text
    onnx = list(run_dir.rglob("*.onnx"))
    grid = list(run_dir.rglob("*_grid.png"))
    assert onnx and grid, sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))[:40]


def test_cli_builds_the_data_and_scores_a_config(tmp_path, capsys, tiny_overrides):
    assert main(["data", "--source", "fashion_classes", "--n-train", "20"]) == 0
    assert "sneaker -> ankle boot" in capsys.readouterr().out
    over = [o.replace("evaluator.", "", 1) for o in tiny_overrides[0]] + ["train_if_missing=false"]
    assert main(["train", "gan_paired", *over]) == 0
    assert main(["score", "gan_paired", "2_2_2_2_2_2_2_2", *over]) == 0
    out = capsys.readouterr().out
    assert '"fid"' in out and '"psnr"' in out
