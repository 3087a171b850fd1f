"""FID / KID as pytorch-fid and the KID paper compute them; PSNR; distillation pieces."""

import numpy as np
import pytest
import torch

from hwaml_gan_compress.distill import Distiller, FeatureTaps, GANLoss
from hwaml_gan_compress.generators import ResnetGenerator
from hwaml_gan_compress.metrics import MetricError, fid, frechet_distance, kid, psnr


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    s1, s2 = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    # |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_fid_and_kid_are_near_zero_for_one_distribution_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(800, 6)), rng.normal(size=(800, 6))
    shifted = b + 0.5
    assert fid(a, b) < 0.1 < fid(a, shifted)
    assert abs(kid(a, b, subsets=5, subset_size=400)) < 0.01 < kid(a, shifted, subsets=5, subset_size=400)
    with pytest.raises(MetricError):
        fid(a[:1], b[:1])


def test_psnr_of_identical_and_of_opposite_images():
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert psnr(x, x) > 100
    assert psnr(torch.ones(1, 1, 4, 4), -torch.ones(1, 1, 4, 4)) == pytest.approx(0.0)


def test_gan_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    hinge = GANLoss("hinge")
    assert float(hinge(real, True)) == pytest.approx(0.25) and float(hinge(fake, False)) == pytest.approx(0.75)
    assert float(hinge(fake, True, for_discriminator=False)) == pytest.approx(0.75)
    assert float(GANLoss("lsgan")(torch.ones(3), True)) == 0.0
    with pytest.raises(ValueError, match="gan_mode"):
        GANLoss("wgan")


def test_distiller_slices_its_adapters_for_narrow_features_and_learns():
    d = Distiller([8], [6])
    fs = torch.randn(2, 5, 4, 4, requires_grad=True)  # a sub-generator: 5 of the 8 channels
    ft = torch.randn(2, 6, 4, 4)
    loss = d.loss([fs], [ft])
    loss.backward()
    grad = d.adapters[0].weight.grad
    assert grad[:, :5].abs().sum() > 0 and grad[:, 5:].abs().sum() == 0
    narrow = d.narrowed([5])
    assert torch.equal(narrow.adapters[0].weight, d.adapters[0].weight[:, :5])
    with pytest.raises(ValueError, match="differ in size"):
        d.loss([torch.randn(1, 8, 2, 2)], [ft])


def test_feature_taps_name_a_missing_layer():
    g = ResnetGenerator(1, 1, 4, 3)
    taps = FeatureTaps(g, ["model.9", "model.12"], "teacher.layers")
    g(torch.zeros(1, 1, 8, 8))
    assert [t.shape[1] for t in taps.take()] == [16, 16]
    taps.remove()
    with pytest.raises(ValueError, match=r"model\.99"):
        FeatureTaps(g, ["model.99"], "teacher.layers")
