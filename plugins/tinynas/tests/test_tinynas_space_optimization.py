import numpy as np
import pytest

from hwaml_tinyengine import plan_model
from hwaml_tinynas.space_optimization import SpaceOptimization, SpaceStats, memory_fit, optimize_search_space, sample_space
from hwaml_tinynas.supernet import space_arch, static_subnet


def test_memory_fit_agrees_with_the_tinyengine_backend_verdict():
    arch = space_arch("mcunet_test", 1.0, 16)
    for cfg in sample_space("mcunet_test", 1.0, 16, 4, seed=0):
        model = static_subnet(arch, cfg).eval()
        plan = plan_model(model, model.input_shape)
        for sram in (plan.peak_sram_kb - 0.5, plan.peak_sram_kb + 0.5):
            fits, peak, flash = memory_fit(model, model.input_shape, sram, 1024)
            assert fits == (plan.peak_sram_kb <= sram)
            assert flash == pytest.approx(plan.flash_kb)
            assert peak >= plan.peak_sram_kb - 1e-9
        assert not memory_fit(model, model.input_shape, 1024, plan.flash_kb - 1)[0]


def test_chooses_the_space_with_most_macs_among_fitting_models(tmp_path):
    big = optimize_search_space("mcunet_test", [0.5, 1.0], [12, 16], sram_kb=1024, flash_kb=4096, samples_per_space=3, progress=False)
    assert (big.width, big.resolution) == (1.0, 16)  # everything fits: the largest space has the most MACs
    assert all(s.fit_fraction == 1.0 for s in big.spaces)
    # a Flash limit at the narrow space's largest model: every narrow model fits, wide ones only if smaller
    limit = max(max(s.flash_kb) for s in big.spaces if s.width == 0.5)
    assert limit < max(max(s.flash_kb) for s in big.spaces if s.width == 1.0)
    tight = optimize_search_space("mcunet_test", [0.5, 1.0], [12, 16], sram_kb=1024, flash_kb=limit, samples_per_space=3, progress=False)
    for s in tight.spaces:
        assert s.fits == [f <= limit for f in s.flash_kb]
    assert any(not all(s.fits) for s in tight.spaces if s.width == 1.0)
    best = max((s for s in tight.spaces if s.n_fit), key=lambda s: s.mean_fit_macs)
    assert (best.width, best.resolution) == (tight.width, tight.resolution)
    assert tight.chosen.mean_fit_macs == best.mean_fit_macs
    files = tight.save(tmp_path)
    assert set(files) == {"json", "csv", "samples", "png"}
    again = SpaceOptimization.load(files["json"])
    assert (again.width, again.resolution) == (tight.width, tight.resolution) and again.spaces[0].macs == tight.spaces[0].macs
    rows = (tmp_path / "space_opt.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("width,resolution")


def test_min_fit_fraction_and_no_fit_errors():
    s = SpaceStats(1.0, 16, macs=[10, 20, 30, 40], fits=[True, False, False, False])
    assert s.fit_fraction == 0.25 and s.mean_fit_macs == 10
    with pytest.raises(ValueError, match="no search space has models that fit"):
        optimize_search_space("mcunet_test", [0.5], [12], sram_kb=0.01, flash_kb=4096, samples_per_space=2, progress=False)
    with pytest.raises(ValueError, match="samples_per_space"):
        optimize_search_space("mcunet_test", [0.5], [12], 64, 256, samples_per_space=0)
    with pytest.raises(ValueError, match="not a TinyNAS"):
        SpaceOptimization.load(__file__)
