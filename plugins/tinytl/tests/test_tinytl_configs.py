"""Every config of the plugin composes and instantiates (no work is done at construction)."""

import pytest
from hydra.utils import instantiate

from hwaml.config import check_component
from hwaml.testing import compose_config
from hwaml_tinytl.backend import TinyTLMemoryBackend
from hwaml_tinytl.evaluator import TinyTLEvaluator


@pytest.mark.parametrize("name", ["tinytl_fashion", "tinytl_digits", "tinytl_letters", "tinytl_imagefolder"])
def test_evaluator_configs(name):
    cfg = compose_config([f"evaluator={name}", "backend=[tinytl_memory]"])
    check_component(cfg.evaluator, "evaluator")
    check_component(cfg.backend.tinytl_memory, "backend.tinytl_memory")
    ev = instantiate(cfg.evaluator)
    assert isinstance(ev, TinyTLEvaluator) and ev.name == name and ev.training.batch_size == 8 and ev.training.weight_decay == 0.0
    assert ev.training.dropout == 0.2 and ev.training.epochs == 50  # the published recipe
    assert isinstance(instantiate(cfg.backend.tinytl_memory), TinyTLMemoryBackend)


def test_experiment_preset():
    cfg = compose_config(["experiment=tinytl_fashion_search"])
    assert cfg.evaluator.target == "fashion_5_9" and "tinytl_memory" in cfg.backend
    assert cfg.constraints.train_memory_kb == 570 and cfg.evaluator.training.epochs == 15
