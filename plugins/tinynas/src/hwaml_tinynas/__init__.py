"""hwaml-tinynas: TinyNAS, the search half of MCUNet (Lin et al., NeurIPS 2020).

Stage 1 optimises the search space for a microcontroller's memory (the
width/resolution space whose models that fit SRAM and Flash have the most
MACs); stage 2 trains a once-for-all supernet in it (hwaml-ofa-nas) and
searches a sub-network under SRAM, Flash, latency, energy or MACs constraints
measured by TinyEngine (hwaml-tinyengine), which then deploys it as C.

Imports are lazy: loading the plugin does not import torch.
"""

from hwaml.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "MCUSupernet": ".supernet",
        "space_arch": ".supernet",
        "static_subnet": ".supernet",
        "subnet_from_config": ".supernet",
        "optimize_search_space": ".space_optimization",
        "SpaceOptimization": ".space_optimization",
        "TinyNASDigits": ".evaluator",
        "Stage1Config": ".config",
        "TrainingConfig": ".config",
        "FinetuneConfig": ".config",
        "MemoryBudget": ".memory",
        "memory_budget": ".memory",
    },
)
