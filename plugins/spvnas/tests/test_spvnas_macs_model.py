"""The width polynomial reproduces the counted MACs of sub-networks it was not fitted on, with and without the point branch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwaml_spvnas.data import ProceduralLidar, collate, prepare_scan
from hwaml_spvnas.design_space import DesignSpace
from hwaml_spvnas.lidar_sim import SensorConfig
from hwaml_spvnas.macs_model import TERMS, MacsModel
from hwaml_spvnas.models import SPVCNN
from hwaml_spvnas.sparse import PointTensor, count_macs

DESIGN = DesignSpace(0.125, 4)


def _counted(net, z) -> int:
    with torch.no_grad(), count_macs() as m:
        net.eval()(PointTensor(z.F, z.C))
    return m.total


@pytest.fixture(scope="module")
def fitted():
    pts, lab = ProceduralLidar(1, seed=3, sensor=SensorConfig(columns=64))[0]
    z = collate([prepare_scan(pts, lab, 0.8)])[0]
    sup = SPVCNN(DESIGN.supernet_spec(), 19)
    rng = np.random.default_rng(0)
    archs = [DESIGN.arch_from_config(DESIGN.search_space().sample(rng)) for _ in range(len(TERMS) + 2)]
    model = MacsModel.fit(lambda a: sup.subnet(a), archs, [lambda: PointTensor(z.F, z.C)], shortcuts=sup.spec["shortcuts"])
    return z, sup, archs, model


def test_the_fitted_model_is_exact_on_other_architectures(fitted):
    z, sup, _, model = fitted
    assert all(abs(v - round(v)) < 1e-6 and v > 0 for v in model.constants.values())  # entry / voxel / point counts
    rng = np.random.default_rng(5)
    for _ in range(2):
        arch = DESIGN.arch_from_config(DESIGN.search_space().sample(rng))
        assert model.macs(arch) == pytest.approx(_counted(sup.subnet(arch), z), rel=1e-9)
    # networks built from scratch have their own shortcuts; the voxel-only baseline has no point layers:
    # the same scan constants, each network's own structure
    arch = DESIGN.arch_from_config(DESIGN.spvcnn_config(0.5))
    for point_branch in (True, False):
        m = MacsModel(model.constants, point_branch=point_branch)
        assert m.macs(arch) == pytest.approx(_counted(SPVCNN(arch, 19, point_branch=point_branch), z), rel=1e-9)


def test_a_wrong_structure_is_refused(fitted):
    _, sup, archs, _ = fitted
    with pytest.raises(ValueError, match="at least"):
        MacsModel.solve(archs[:5], [1.0] * 5)
    good = [MacsModel(fitted[3].constants, shortcuts=sup.spec["shortcuts"]).macs(a) for a in archs]
    with pytest.raises(ValueError, match="does not reproduce"):  # counts of SPVCNN solved as if the point branch were absent
        MacsModel.solve(archs, good, point_branch=False, shortcuts=sup.spec["shortcuts"])
    assert MacsModel.solve(archs, good, shortcuts=sup.spec["shortcuts"]).constants == pytest.approx(fitted[3].constants)
