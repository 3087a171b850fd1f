"""`hwaml run experiment=mcunet_digits` end to end (shrunk), single and multirun."""

import json
import os
import subprocess
import sys

#: overrides that shrink experiment=mcunet_digits to seconds (the real scale is the preset's)
SHRUNK = [
    "evaluator.base_arch=mcunet_test",
    "evaluator.stage1.widths=[0.5,1.0]",
    "evaluator.stage1.resolutions=[12,16]",
    "evaluator.stage1.samples_per_space=3",
    "evaluator.training.epochs={full:2,kernel:1,depth:1,expand:1}",
    "evaluator.training.calibration_size=100",
    "evaluator.progress=false",
    "evaluator.threads=1",
    "budget.trials=3",
    "searcher.population_size=2",
]


def _hwaml(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hwaml.cli", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_mcunet_digits_searches_trains_deploys_and_runs_the_c(tmp_path):
    run = tmp_path / "run"
    p = _hwaml("run", "experiment=mcunet_digits", *SHRUNK, f"hydra.run.dir={run}")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "hwaml: best trial" in out
    best = json.loads(out.split("hwaml: best trial", 1)[1].split(" ", 2)[2].splitlines()[0])
    for key in ("accuracy", "peak_sram_kb", "flash_kb", "latency_ms", "fits", "macs_m", "energy_mj"):
        assert key in best, key
    assert best["peak_sram_kb"] <= 64 and best["flash_kb"] <= 256 and best["latency_ms"] <= 60
    assert "hwaml deploy: trial" in out and ": ok: matched 8/8" in out, out
    assert "match the Python int8 reference" in out
    metrics = json.loads(out.split("metrics: ", 1)[1].splitlines()[0])
    assert metrics["outputs_matched"] == 1.0 and metrics["c_accuracy"] > 0.2
    project = next((run / "deploy").iterdir())
    assert (project / "model.c").is_file() and (project / "weights.h").is_file()
    for name in ("space_opt.json", "space_opt.csv", "space_opt.png", "supernet.pt", "supernet.json"):
        assert (run / "tinynas" / name).is_file()
    assert json.loads((run / "tinynas" / "space_opt.json").read_text())["settings"]["device"] == "mcu64k"


def test_multirun_over_devices_gives_one_model_each_and_a_summary(tmp_path):
    sweep = tmp_path / "sweep"
    p = _hwaml(
        "run",
        "--multirun",
        "experiment=mcunet_digits",
        "backend=[mcu64k],[stm32f412]",
        *SHRUNK,
        "deploy.enabled=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    jobs = sorted(d for d in sweep.iterdir() if (d / "trials.sqlite").exists())
    assert len(jobs) == 2
    devices = [json.loads((j / "tinynas" / "space_opt.json").read_text())["settings"]["device"] for j in jobs]
    assert sorted(devices) == ["mcu64k", "stm32f412"]
    r = _hwaml("report", str(sweep))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mcu64k" in r.stdout and "stm32f412" in r.stdout
    assert (sweep / "summary.csv").is_file()


def test_mcunet_fashion_preset_runs_on_an_idx_folder_shrunk(tmp_path):
    """experiment=mcunet_fashion (its device, data option and deploy) on a small
    MNIST-like IDX folder the test writes, shrunk to seconds."""
    import numpy as np

    from hwaml_tinynas.idx import write_idx

    data = tmp_path / "idx"
    data.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", 200), ("t10k", 30)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(data / f"{stem}-images-idx3-ubyte.gz", (rng.integers(0, 40, (n, 28, 28)) + y[:, None, None] * 20).astype(np.uint8))
        write_idx(data / f"{stem}-labels-idx1-ubyte.gz", y)
    run = tmp_path / "run"
    shrunk = [s for s in SHRUNK if "resolutions" not in s and "widths" not in s and "base_arch" not in s]
    p = _hwaml(
        "run",
        "experiment=mcunet_fashion",
        *shrunk,
        "evaluator.base_arch=mcunet_test",
        "evaluator.stage1.widths=[0.5]",
        "evaluator.stage1.resolutions=[12]",
        f"evaluator.data.root={data}",
        "evaluator.data.val_images=50",
        "evaluator.data.train_images=100",
        f"hydra.run.dir={run}",
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    best = json.loads(out.split("hwaml: best trial", 1)[1].split(" ", 2)[2].splitlines()[0])
    assert best["peak_sram_kb"] <= 8  # the preset's 8 KB-SRAM part
    assert "C outputs on 30 test images match the Python int8 reference" in out, out
    assert json.loads((run / "tinynas" / "supernet.json").read_text())["settings"]["data"]["root"] == str(data)
