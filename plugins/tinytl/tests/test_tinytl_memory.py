"""tinytl_memory on networks other evaluators build."""



def test_a_batch_norm_network_with_a_1x1_map_is_profiled():
    # batch norm on one sample of a 1x1 map cannot run in training mode: the trace uses running statistics
    from torch import nn

    from hwaml_tinytl.memory import profile_training_memory

    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10)).train()
    prof = profile_training_memory(net, (3, 4, 4), batch_size=8)
    assert prof.train_memory_bytes > 0 and prof.saved_bytes > 0
    assert all(m.training for m in net.modules())  # left as it was
