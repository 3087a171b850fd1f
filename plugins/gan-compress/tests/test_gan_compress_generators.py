"""Generators: layout shared by teacher and student, weight sharing, exact MACs."""

import pytest
import torch

from hwaml_gan_compress.generators import (
    CHANNEL_SETS,
    ChannelConfig,
    MobileResnetGenerator,
    ResnetGenerator,
    SuperMobileResnetGenerator,
    channel_choices,
    count_config_macs,
    init_weights,
)
from hwaml_gan_compress.macs import count_module_macs


def test_teacher_is_the_pix2pix_resnet_9blocks_and_its_distilled_layers_are_where_the_paper_says():
    with torch.device("meta"):  # shapes only: counting needs no arithmetic
        g = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    mods = dict(g.named_modules())
    # model.9 ends the downsampling (a ReLU at ngf*4), model.12/15/18 are blocks 3/6/9
    assert isinstance(mods["model.9"], torch.nn.ReLU) and isinstance(mods["model.7"], torch.nn.Conv2d) and mods["model.7"].out_channels == 256
    assert [type(mods[f"model.{i}"]).__name__ for i in (12, 15, 18)] == ["ResnetBlock"] * 3
    assert type(mods["model.19"]).__name__ == "ConvTranspose2d"
    # the paper's count for the CycleGAN/pix2pix ResNet generator at 256x256: 56.8 GMACs
    assert count_module_macs(g, (3, 256, 256)) / 1e9 == pytest.approx(56.8, abs=0.05)


def test_config_forms_round_trip_and_bad_ones_name_the_problem():
    c = ChannelConfig.from_any("16_16_32_16_32_32_16_16")
    assert c.to_str() == "16_16_32_16_32_32_16_16" and ChannelConfig.from_any(c.to_dict()) == c == ChannelConfig.from_any(c.to_list())
    assert c.widths() == {"stem": 16, "down1": 32, "down2": 128, "blocks1": 64, "blocks2": 128, "blocks3": 128, "up1": 32, "up2": 16}
    with pytest.raises(ValueError, match="need 8"):
        ChannelConfig.from_any([16] * 7)
    with pytest.raises(ValueError, match="unknown"):
        ChannelConfig.from_any({**c.to_dict(), "stemm": 3})
    with pytest.raises(ValueError, match="not one of"):
        channel_choices("channels-65", 64)
    with pytest.raises(ValueError, match="exceeds"):
        channel_choices("channels-64-pix2pix", 48)


def test_published_choice_sets_and_scaling():
    assert channel_choices("channels-64-pix2pix", 64)[0] == [64, 56, 48, 32, 24, 16]
    assert channel_choices("channels-48", 48)[0] == [48, 32] and channel_choices("channels-48", 48)[6] == [48, 32, 24, 16]
    assert channel_choices("scaled:channels-64-pix2pix", 16)[0] == [16, 14, 12, 8, 6, 4]
    assert len(CHANNEL_SETS["channels-64-cycleGAN"]) == 8


@pytest.mark.parametrize("n_blocks", [3, 9])
def test_sub_generators_share_the_first_channels_and_extract_exactly(n_blocks):
    sup = init_weights(SuperMobileResnetGenerator(8, "scaled:channels-64-pix2pix", 1, 1, n_blocks), seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    for _ in range(4):
        cfg = sup.set_config(sup.sample(gen))
        sub = sup.extract()
        with torch.no_grad():
            assert torch.allclose(sup(x), sub(x), atol=1e-6)
        # weight sharing: the sub-generator's stem is the first k filters of the super stem
        assert torch.equal(sub.model[1].weight, sup.model[1].weight[: cfg.stem])
        assert torch.equal(sub.model[7].weight, sup.model[7].weight[: cfg.down2 * 4, : cfg.down1 * 2])
    with pytest.raises(ValueError, match="not among the choices"):
        sup.set_config(ChannelConfig.uniform(5))


def test_the_largest_sub_generator_is_the_whole_super_generator():
    sup = SuperMobileResnetGenerator(8, [[8, 4]] * 8, 1, 1, 3)
    sub = sup.extract(sup.largest())
    assert sum(p.numel() for p in sub.parameters()) == sum(p.numel() for p in sup.parameters())
    assert sup.smallest() == ChannelConfig.uniform(4)


@pytest.mark.parametrize("config", ["16_16_16_16_16_16_16_16", "12_8_4_16_14_8_14_14", "4_4_4_4_4_4_4_4"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 20)])
def test_macs_from_the_config_equal_the_count_on_the_module(config, shape):
    model = MobileResnetGenerator(config, shape[0], 1, 9)
    assert count_config_macs(config, shape[0], 1, 9, shape[1], shape[2]) == count_module_macs(model, shape)


def test_mobile_student_is_much_cheaper_than_the_teacher():
    teacher = count_module_macs(ResnetGenerator(1, 1, 16, 9), (1, 28, 28))
    smallest = count_config_macs(ChannelConfig.uniform(4), 1, 1, 9, 28, 28)
    assert teacher / smallest > 9
    with pytest.raises(ValueError, match="divisible by 4"):
        count_config_macs(ChannelConfig.uniform(4), 1, 1, 9, 30, 28)
