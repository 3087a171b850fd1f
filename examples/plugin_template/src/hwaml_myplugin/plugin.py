"""Module-level hooks of the plugin (the target of the ``hwaml`` entry point).

Keep this module thin and cheap to import: ``hwaml plugins`` and every
``hwaml run`` import it. Components (evaluators, backends, searchers) are
classes in their own modules that Hydra instantiates from the YAML files
under ``conf/`` when a config selects them.
"""

from __future__ import annotations

from typing import List

from hwaml import hookimpl


@hookimpl
def config_search_path() -> List[str]:
    # The package hwaml_myplugin.conf holds the config groups evaluator/ and backend/.
    return ["pkg://hwaml_myplugin.conf"]
