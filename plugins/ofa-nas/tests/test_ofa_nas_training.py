"""Progressive shrinking, batch-norm recalibration, checkpoints."""

import numpy as np
import pytest
import torch

from hwaml_ofa_nas.progressive_shrinking import (
    build_schedule,
    calibration_images,
    evaluate_accuracy,
    load_supernet,
    save_supernet,
    recalibrate_batchnorm,
    train_progressive_shrinking,
    train_static,
)
from hwaml_ofa_nas.supernet import OFAMobileNetV3, build_subnet
from hwaml_ofa_nas.data import DataSplits
from torch.utils.data import Subset


def test_schedule_follows_the_published_order():
    phases = build_schedule([3, 5, 7], [2, 3, 4], [3, 4, 6], {"full": 1, "kernel": 2, "depth": [3, 4], "expand": [5, 6]}, {"full": 0.1, "kernel": 0.1, "depth": 0.1, "expand": 0.1})
    assert [p.name for p in phases] == ["full", "kernel", "depth_1", "depth_2", "expand_1", "expand_2"]
    assert [p.epochs for p in phases] == [1, 2, 3, 4, 5, 6]
    full, kernel, d1, d2, e1, e2 = phases
    assert (full.kernel_choices, full.depth_choices, full.expand_choices, full.distill) == ([7], [4], [6], False)
    assert kernel.kernel_choices == [3, 5, 7] and kernel.depth_choices == [4] and kernel.distill
    assert d1.depth_choices == [3, 4] and d2.depth_choices == [2, 3, 4] and d2.expand_choices == [6]
    assert e1.expand_choices == [4, 6] and e1.sort_channels == []
    assert e2.expand_choices == [3, 4, 6] and e2.sort_channels == [4]
    with pytest.raises(ValueError, match="epochs.depth"):
        build_schedule([3, 5, 7], [2, 3, 4], [3, 4, 6], {"full": 1, "kernel": 1, "depth": [1], "expand": 1}, {"full": 0.1, "kernel": 0.1, "depth": 0.1, "expand": 0.1})


def test_phases_run_in_order_and_kernel_transforms_learn_in_the_kernel_phase(digits16):
    small = DataSplits(Subset(digits16.train, range(128)), Subset(digits16.val, range(64)), 10, digits16.classes, 16)
    torch.manual_seed(0)
    net = OFAMobileNetV3("test_tiny")
    phases = build_schedule(net.arch.kernel_choices, net.arch.depth_choices, net.arch.expand_choices, {"full": 1, "kernel": 1, "depth": 1, "expand": 1}, {"full": 0.1, "kernel": 0.05, "depth": 0.05, "expand": 0.05})
    snapshots = {}
    seen_sort = []
    original_sort = net.sort_channels
    net.sort_channels = lambda protected=(): (seen_sort.append(list(protected)), original_sort(protected))[1]

    def on_end(record, n):
        snapshots[record.name] = [p.detach().clone() for p in n.kernel_transforms()]

    report = train_progressive_shrinking(net, small, phases, batch_size=32, seed=0, calibration_size=32, progress=False, on_phase_end=on_end)
    assert report.order == ["full", "kernel", "depth_1", "depth_2", "expand_1", "expand_2"]
    eye = [torch.eye(p.shape[0]) for p in snapshots["full"]]
    # only the largest kernel is used in the full phase: transforms untouched
    assert all(torch.equal(a, b) for a, b in zip(snapshots["full"], eye))
    # the kernel phase trains them
    assert any(not torch.allclose(a, b) for a, b in zip(snapshots["kernel"], eye))
    assert seen_sort == [[], [4]]
    for rec in report.phases:
        assert np.isfinite(rec.final_loss) and 0.0 <= rec.val_accuracy["max"] <= 1.0


def test_trained_supernet_beats_chance_and_checkpoint_round_trips(trained_tiny, digits16, tmp_path):
    path, net, report = trained_tiny
    assert report.order[0] == "full" and report.order[-1] == "expand_2"
    loaded = load_supernet(path, expect_arch="test_tiny")
    # (the session's `net` is shared and recalibrated by other tests: round-trip a copy of it now)
    save_supernet(net, tmp_path / "copy.pt")
    copy = load_supernet(tmp_path / "copy.pt")
    cfg = copy.sample_active_subnet(np.random.default_rng(0))
    net.set_active_subnet(cfg)
    x = torch.randn(2, 3, cfg["resolution"], cfg["resolution"])
    net.eval()
    copy.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), copy(x))
    calib = calibration_images(digits16.train, 200)
    loaded.set_max_subnet()
    recalibrate_batchnorm(loaded, calib, 16)
    assert evaluate_accuracy(loaded, digits16.val, 16) > 0.25  # 10 classes: chance is 0.1
    with pytest.raises(ValueError, match="another shape"):
        load_supernet(path, expect_arch="tiny_digits")


def test_bn_recalibration_sets_exact_statistics():
    torch.manual_seed(0)
    net = OFAMobileNetV3("test_tiny")
    cfg = net.sample_active_subnet(np.random.default_rng(4))
    stem_bn = net.stem.bn
    before = stem_bn.running_mean.clone()
    images = torch.randn(40, 3, 16, 16) * 2 + 1
    recalibrate_batchnorm(net, images, cfg["resolution"], batch_size=20)
    assert not torch.allclose(before, stem_bn.running_mean)
    # the stem's statistics are the average of the two batches' means
    from hwaml_ofa_nas.data import resize_batch

    with torch.no_grad():
        x = resize_batch(images, cfg["resolution"])
        conv = net.stem.conv(x)
        means = torch.stack([conv[:20].mean((0, 2, 3)), conv[20:].mean((0, 2, 3))]).mean(0)
    torch.testing.assert_close(stem_bn.running_mean, means, rtol=1e-4, atol=1e-5)
    assert stem_bn.momentum == 0.1 and net.training  # momentum and mode restored
    # elastic BN: only the active slice is recalibrated
    block = net.blocks[0]
    mid = block.mid_channels(block.active_expand)
    assert torch.all(block.inverted_bottleneck.bn.running_mean[mid:] == 0)


def test_train_static_learns(digits16):
    torch.manual_seed(0)
    model = build_subnet("test_tiny", OFAMobileNetV3("test_tiny").max_config())
    small = DataSplits(Subset(digits16.train, range(512)), digits16.val, 10, digits16.classes, 16)
    train_static(model, small, epochs=3, lr=0.3, resolution=16, batch_size=32)
    assert evaluate_accuracy(model, digits16.val, 16) > 0.4
