import numpy as np
import pytest
import torch
from torch import nn

from hwaml_tinyengine.ir import import_model
from hwaml_tinynas.supernet import MCUSupernet, base_arch, space_arch, static_subnet, subnet_from_config


def _acts(module):
    return {type(m).__name__ for m in module.modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardswish))}


def test_space_arch_scales_width_and_fixes_resolution():
    a1, a2 = space_arch("mcunet_digits", 1.0, 24), space_arch("mcunet_digits", 1.5, 24)
    assert a1.resolutions == (24,)
    assert all(w2 > w1 for w1, w2 in zip(a1.stage_widths, a2.stage_widths))


def test_base_arch_rejects_hswish_and_squeeze_excite():
    d = base_arch("mcunet_test").to_dict()
    d["stages"][1]["se"] = True
    with pytest.raises(ValueError, match="stages\\[1\\].*se=false"):
        base_arch(d)
    with pytest.raises(ValueError, match="unknown TinyNAS base arch"):
        base_arch("nope")


def test_extracted_subnet_is_relu6_and_matches_the_supernet():
    torch.manual_seed(0)
    net = MCUSupernet(space_arch("mcunet_test", 1.0, 16)).eval()
    assert _acts(net) == {"ReLU6"}
    cfg = net.sample_active_subnet(np.random.default_rng(1))
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        want = net(x)
        sub = net.get_active_subnet().eval()
        got = sub(x)
    assert _acts(sub) == {"ReLU6"}
    assert sub.input_shape == (1, 16, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # the backend's factory builds the same module tree: the weights load into it
    fresh = static_subnet(net.arch, cfg)
    fresh.load_state_dict(sub.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), got)


def test_subnets_import_into_tinyengine():
    arch = space_arch("mcunet_test", 0.5, 12)
    cfg = MCUSupernet.space_for(arch).sample(np.random.default_rng(0))
    model = subnet_from_config(cfg, arch="mcunet_test", width=0.5, resolution=12)
    g = import_model(model, model.input_shape)
    ops = {d["op"] for _, d in g.nodes(data=True)}
    assert "conv" in ops or "dwconv" in ops or len(ops) > 2
    with pytest.raises(ValueError, match="resolution"):
        subnet_from_config(cfg, arch="mcunet_test", resolution=16)
