"""SemanticKITTI format and maps, the procedural LiDAR set, mIoU."""

import numpy as np
import pytest

from hwaml_spvnas.data import ProceduralLidar, prepare_scan
from hwaml_spvnas.lidar_sim import RAW, SensorConfig, simulate_scan
from hwaml_spvnas.metrics import ConfusionMatrix
from hwaml_spvnas.semantic_kitti import CLASS_NAMES, IGNORE, SemanticKITTI, learning_map, read_labels, read_points, write_scan


def test_learning_maps_official_and_the_references_differences():
    off, ref = learning_map("official"), learning_map("spvnas")
    idx = {n: i for i, n in enumerate(CLASS_NAMES)}
    assert off[10] == idx["car"] and off[252] == idx["car"] and off[254] == idx["person"]
    assert off[60] == idx["road"] and off[13] == idx["other-vehicle"] and off[0] == IGNORE and off[52] == IGNORE
    differ = sorted(int(i) for i in np.nonzero(off != ref)[0])
    assert differ == [13, 16, 60, 256, 257]
    assert all(ref[i] == IGNORE for i in differ)
    with pytest.raises(ValueError):
        learning_map("kitti360")


def test_semantickitti_files_round_trip_and_load_by_split(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 4)).astype(np.float32)
    sem = rng.choice([10, 30, 40, 60, 252, 0], 50)
    inst = rng.integers(0, 5, 50)
    b, l = write_scan(tmp_path, "08", 0, pts, sem, inst)
    raw = np.fromfile(l, dtype=np.uint32)
    assert np.array_equal(raw & 0xFFFF, sem) and np.array_equal(raw >> 16, inst)
    assert np.array_equal(read_points(b), pts)
    s2, i2 = read_labels(l, 50)
    assert np.array_equal(s2, sem) and np.array_equal(i2, inst)
    write_scan(tmp_path, "00", 0, pts[:10], sem[:10])
    write_scan(tmp_path, "00", 1, pts[:20], sem[:20])
    train = SemanticKITTI(str(tmp_path), "train")
    val = SemanticKITTI(str(tmp_path), "val", map_variant="spvnas")
    assert len(train) == 2 and len(val) == 1
    p, y = val[0]
    assert p.shape == (50, 4) and np.array_equal(y, learning_map("spvnas")[sem])
    assert len(SemanticKITTI(str(tmp_path), "train", max_scans=1)) == 1


def test_malformed_semantickitti_files_are_named(tmp_path):
    bad = tmp_path / "x.bin"
    np.zeros(7, dtype=np.float32).tofile(bad)
    with pytest.raises(ValueError, match="multiple of 4"):
        read_points(bad)
    b, l = write_scan(tmp_path, "08", 0, np.zeros((5, 4), np.float32), np.zeros(5, int))
    with pytest.raises(ValueError, match="4 labels for 5 points|5 labels for 4"):
        read_labels(l, 4)
    with pytest.raises(FileNotFoundError, match="sequences"):
        SemanticKITTI(str(tmp_path / "nowhere"))


def test_procedural_scans_are_reproducible_and_hold_small_objects():
    sensor = SensorConfig(columns=256)
    a, sa, ia = simulate_scan(5, 2, sensor)
    b, sb, ib = simulate_scan(5, 2, sensor)
    assert np.array_equal(a, b) and np.array_equal(sa, sb)
    c, _, _ = simulate_scan(5, 3, sensor)
    assert a.shape != c.shape or not np.array_equal(a, c)
    labels = set(np.unique(sa).tolist())
    for name in ("road", "building", "car", "person", "pole"):
        assert RAW[name] in labels, name
    # 64 beams from 1.73 m: nothing below the ground, ranges within the sensor's
    assert a[:, 2].min() > -1.73 - 0.2
    r = np.linalg.norm(a[:, :3] + [0, 0, 0], axis=1)
    assert r.max() <= 72 and 0 <= a[:, 3].min() and a[:, 3].max() <= 1
    assert len(np.unique(ia[sa == RAW["person"]])) > 1  # several pedestrian instances


def test_procedural_scans_write_as_semantickitti(tmp_path):
    ds = ProceduralLidar(2, seed=1, sensor=SensorConfig(columns=128))
    for i in range(2):
        pts, sem, inst = ds.raw(i)
        write_scan(tmp_path, "08", i, pts, sem, inst)
    val = SemanticKITTI(str(tmp_path), "val")
    for i in range(2):
        p, y = val[i]
        assert np.array_equal(p, ds[i][0]) and np.array_equal(y, ds[i][1])


def test_prepare_scan_maps_representatives_back_to_every_point():
    pts, lab = ProceduralLidar(1, sensor=SensorConfig(columns=128))[0]
    s = prepare_scan(pts, lab, 0.5)
    assert len(s.inverse) == len(pts) and s.feats.shape[0] < len(pts)
    vox = np.floor(s.coords.numpy()).astype(int)
    assert len(np.unique(vox, axis=0)) == len(vox)  # one representative per voxel
    aug = prepare_scan(pts, lab, 0.5, augment=True, rng=np.random.default_rng(0))
    assert not np.allclose(aug.points[:, :2], pts[:, :2])
    assert np.allclose(np.linalg.norm(aug.points[:, :2], axis=1) / np.linalg.norm(pts[:, :2], axis=1), np.linalg.norm(aug.points[0, :2]) / np.linalg.norm(pts[0, :2]), rtol=1e-4)


def test_miou_averages_only_classes_present_in_the_ground_truth():
    cm = ConfusionMatrix(4, ignore=255)
    cm.update(np.array([0, 0, 1, 1, 3, 2]), np.array([0, 0, 1, 0, 255, 1]))
    iou = cm.iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3])  # absent from the ground truth: no IoU (not 1)
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == pytest.approx(1 / 3)
    assert cm.miou() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="predictions"):
        cm.update(np.array([0]), np.array([0, 1]))
