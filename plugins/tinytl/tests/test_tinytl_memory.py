"""tinytl_memory on networks other evaluators build."""



def test_a_batch_norm_network_with_a_1x1_map_is_profiled():
    # batch norm on one sample of a 1x1 map cannot run in training mode: the trace uses running statistics
    from torch import nn

    from hwaml_tinytl.memory import profile_training_memory

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10)).train()
    prof = profile_training_memory(net, (3, 4, 4), batch_size=8)
    assert prof.train_memory_bytes > 0 and prof.saved_bytes > 0
    assert all(m.training for m in net.modules())  # left as it was


def test_the_paper_peak_rule_is_the_published_profilers_forward_accounting():
    # conv 3->8 (trainable) -> GN (frozen) -> ReLU -> depthwise 8 (frozen) -> pool -> linear (trainable)
    import torch
    from torch import nn

    from hwaml_tinytl.memory import profile_training_memory

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(1, 8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    ).train()
    for m in (net[1], net[3]):
        for p in m.parameters():
            p.requires_grad_(False)
    b, hw = 4, 36
    x, a = 3 * hw, 8 * hw  # per-sample elements of the input and of every 8-channel map
    # saved: conv1 keeps its input, ReLU 1 bit, frozen GN / depthwise nothing, linear its 8 inputs
    saved = 4 * b * x + b * a // 8 + 4 * b * 8
    # forward peak as published: saved so far + the layer's working memory; conv: in + out/groups,
    # GN / ReLU in place (input only), pooling nothing; the worst point is the depthwise conv
    work = {
        "conv1": 4 * b * (x + a),
        "gn": 4 * b * x + 4 * b * a,
        "relu": 4 * b * x + 4 * b * a,
        "dw": 4 * b * x + b * a // 8 + 4 * b * (a + a // 8),
        "linear": 4 * b * x + b * a // 8 + 4 * b * (8 + 2),
    }
    paper = profile_training_memory(net, (3, 6, 6), b, norm_rule="paper", peak_rule="paper")
    assert paper.saved_bytes == saved
    assert paper.peak_activation_bytes == max(work.values())
    weights = 4 * (8 * 27 + 8 * 2 + 2) + (8 + 8 + 72)  # trainable conv1 + linear at 32 bits; GN + depthwise at 8
    assert paper.weight_bytes == weights
    # the stricter schedule walk counts every output in full and the backward gradients: never less
    sched = profile_training_memory(net, (3, 6, 6), b, norm_rule="paper", peak_rule="schedule")
    assert sched.saved_bytes == saved and sched.peak_activation_bytes > paper.peak_activation_bytes
    import pytest

    with pytest.raises(ValueError, match="peak_rule"):
        profile_training_memory(net, (3, 6, 6), b, peak_rule="guess")
    with pytest.raises(ValueError, match="schedule"):
        profile_training_memory(net, (3, 6, 6), b, recompute=True)
    assert torch.is_grad_enabled()
