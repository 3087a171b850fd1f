"""The settings shared by the 3D-NAS benchmark's stages (one place, so every stage finds the same cached supernet)."""

from __future__ import annotations

import os
from pathlib import Path

#: procedural scans: 12 training scans (seed 10; the supernet and every network train on them), 4 search-validation
#: scans (seed 11: the evolution's fitness), 4 test scans (seed 20: only the final comparison)
DATA = {"source": "procedural", "train_scans": 12, "val_scans": 4, "seed": 10, "columns": 512, "voxel_size": 0.3}
TEST_SEED, TEST_SCANS = 20, 4
SPACE = {"width_multiplier": 0.5, "granularity": 4}
#: the supernet: uniform sampling, full depth for the first half of the epochs, then depth 1 or 2
SUPERNET = {"epochs": 16, "batch_size": 1, "lr": 0.1, "warmup_epochs": 1.0, "depth_shrink_at": 0.5, "bn_calibration_scans": 2}
#: every network of the comparison (from scratch or fine-tuned from the supernet): the recipe of spvcnn_vs_minkunet.py
TRAIN = {"epochs": 12, "batch_size": 1, "lr": 0.1, "warmup_epochs": 1.0}
FINETUNE_LR = 0.02  # fine-tuning from the supernet's weights starts lower (no warm-up needed from a trained point)
CACHE = Path(os.environ.get("HWAML_CACHE", Path.home() / ".cache" / "hwaml")) / "spvnas" / "bench_nas"


def evaluator(progress: bool = False):
    from hwaml_spvnas.evaluator import SPVNASEvaluator

    return SPVNASEvaluator(data=dict(DATA), space=dict(SPACE), supernet_training=dict(SUPERNET), checkpoint=str(CACHE / "supernet.pt"),
                           training={"epochs": 0, "bn_calibration_scans": 2}, cost_scans=1, progress=progress)
