"""One Hydra SearchPathPlugin, registered in code, that asks hwaml plugins for
their config folders.

Hydra's own discovery scans the ``hydra_plugins`` namespace package, which misses
editable installs; registering the class with ``Plugins.instance().register``
does not depend on how a plugin was installed.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from .plugins import load_plugins


class HwamlSearchPathPlugin(SearchPathPlugin):
    """Appends every loaded hwaml plugin's ``config_search_path`` entries."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        registry = load_plugins()
        registry.check_conflicts()
        for plugin, entry in registry.search_path:
            search_path.append(provider=f"hwaml-{plugin}", path=entry)


_registered = False


def register_search_path_plugin() -> None:
    """Idempotently register :class:`HwamlSearchPathPlugin` with Hydra."""
    global _registered
    if not _registered:
        Plugins.instance().register(HwamlSearchPathPlugin)
        _registered = True
