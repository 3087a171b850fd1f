"""Entry point of the sparch-sim plugin: it contributes its config groups.

The components themselves (``sparch`` and ``sparch_area`` backends, the
``sparch_design`` evaluator) live in :mod:`hwaml_sparch_sim.components` and are
instantiated by Hydra from ``conf/``.
"""

from __future__ import annotations

from typing import List

from hwaml import hookimpl


@hookimpl
def config_search_path() -> List[str]:
    return ["pkg://hwaml_sparch_sim.conf"]
