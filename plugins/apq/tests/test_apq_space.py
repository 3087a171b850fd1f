import numpy as np
import pytest

from hwaml import SpaceError
from hwaml_ofa_nas.supernet import supernet_config

from hwaml_apq.space import BIT_KEYS, JointEncoder, JointSpaceConfig, extreme_config, joint_blocks, joint_space, stage_blocks, width_choices


def _blocks(space, cfg):
    return [b for st in space.meta["apq"]["stages"] for b in stage_blocks(cfg, st["name"])]


def test_published_space_on_the_imagenet_supernet():
    arch = supernet_config("mobilenetv3_large")
    space = joint_space(arch)
    meta = space.meta["apq"]
    assert meta["depth_choices"] == [2, 3, 4] and meta["kernel_choices"] == [3, 5, 7] and meta["bit_choices"] == [4, 6, 8]
    # the block after the 24-wide stage reads 24 channels: 96..144 in steps of 8
    assert meta["stages"][1]["first_widths"] == list(range(96, 145, 8))
    assert meta["stages"][0]["rest_widths"] == list(range(96, 145, 8))


def test_width_choices_refuse_more_than_the_supernet_stores():
    assert width_choices(16, 4, 6, 8, 96) == [64, 72, 80, 88, 96]
    with pytest.raises(ValueError, match="width_high"):
        width_choices(16, 4, 7, 8, 96)


def test_invalid_combination_is_never_made_and_is_refused():
    space = joint_space(supernet_config("tiny_digits"))
    rng = np.random.default_rng(0)
    cfgs = [space.sample(rng) for _ in range(200)]
    cfgs += [space.mutate(c, rng, 0.5) for c in cfgs]
    cfgs += [space.crossover(cfgs[i], cfgs[-i - 1], rng) for i in range(100)]
    blocks = [b for c in cfgs for b in _blocks(space, c)]
    assert any(b["kernel"] == 7 for b in blocks) and any(b["dw_a_bits"] == 4 for b in blocks)
    assert not any(b["kernel"] == 7 and b["dw_a_bits"] == 4 for b in blocks)
    bad = extreme_config(space, "max")
    bad["stage2"]["first"]["kernel"] = 7
    bad["stage2"]["first"]["dw_a_bits"] = 4
    with pytest.raises(SpaceError, match=r"stage2\.first\.dw_a_bits"):
        space.validate(bad)


def test_optuna_suggest_respects_the_invalid_combination():
    import optuna
    space = joint_space(supernet_config("test_tiny"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        cfg = space.suggest(study.ask())
        space.validate(cfg)


def test_one_hot_encoding_layout():
    space = joint_space(supernet_config("tiny_digits"))
    enc = JointEncoder(space.meta["apq"])
    cfg = space.sample(np.random.default_rng(1))
    arch, quant = enc.encode(cfg)
    n_blocks = len(_blocks(space, cfg))
    assert arch.sum() == 2 * n_blocks  # one kernel and one width per present block
    assert quant.sum() == len(BIT_KEYS) * n_blocks
    assert set(np.unique(np.concatenate([arch, quant]))) <= {0.0, 1.0}
    assert enc.n_quant == 3 * 4 * len(BIT_KEYS) * 3  # 3 stages x 4 slots x 4 bit-widths x 3 choices
    other = space.mutate(cfg, np.random.default_rng(2), 1.0)
    assert not np.array_equal(enc.vector(cfg), enc.vector(other))


def test_shrunk_space_and_block_shapes():
    arch = supernet_config("test_tiny")
    space = joint_space(arch, JointSpaceConfig(depth_choices=[2], kernel_choices=[3], bit_choices=[4, 8]))
    cfg = space.sample(np.random.default_rng(0))
    assert all(len(cfg[s["name"]]["rest"]) == 1 for s in space.meta["apq"]["stages"])
    blocks = joint_blocks(arch, cfg, space.meta["apq"]["resolution"])
    assert blocks[0].cin == arch.scaled(arch.first_block_width) and blocks[1].cin == blocks[0].cout
    with pytest.raises(ValueError, match="depth_choices"):
        joint_space(arch, JointSpaceConfig(depth_choices=[5]))
