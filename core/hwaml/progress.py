"""The one progress helper every component uses for long work.

``progress(iterable, total=..., desc=...)`` returns a tqdm bar, or the plain
iterable when bars are off. Bars are on when the global setting allows them
(``progress: true`` in the run config, the default; ``hwaml run progress=false``
turns every bar off) **and** stderr is a terminal, so logs, CI and files stay
quiet. ``HWAML_PROGRESS=1`` forces bars on (for example under a pager),
``HWAML_PROGRESS=0`` forces them off.

A component's own ``progress`` argument can only turn its bars off::

    from hwaml.progress import progress

    for epoch in progress(range(epochs), desc="OFA kernel", enabled=self.show_progress):
        ...
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Optional

__all__ = ["progress", "enabled", "set_enabled", "bar"]

_GLOBAL: Optional[bool] = None


def set_enabled(value: Optional[bool]) -> None:
    """Set the global switch (``hwaml run`` sets it from ``cfg.progress``); ``None`` resets it."""
    global _GLOBAL
    _GLOBAL = None if value is None else bool(value)
    if value is not None:
        # executor workers inherit the environment, not this module's state
        os.environ["HWAML_PROGRESS_SETTING"] = "1" if value else "0"


def enabled(local: bool = True) -> bool:
    """Whether a bar would be shown now (``local``: the component's own switch)."""
    if not local:
        return False
    forced = os.environ.get("HWAML_PROGRESS")
    if forced is not None and forced.strip() != "":
        return forced.strip().lower() not in ("0", "false", "no", "off")
    setting = _GLOBAL
    if setting is None:
        inherited = os.environ.get("HWAML_PROGRESS_SETTING")
        setting = True if inherited is None else inherited == "1"
    if not setting:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False


class _NoBar:
    """What :func:`bar` returns when bars are off: accepts tqdm's calls, does nothing."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None) -> None:
        self._it = iterable

    def __iter__(self):
        return iter(self._it if self._it is not None else ())

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def bar(iterable: Optional[Iterable[Any]] = None, total: Optional[int] = None, desc: str = "", unit: str = "it", enabled: bool = True, leave: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar (or a do-nothing stand-in with the same methods when bars are off)."""
    if not _enabled(enabled):
        return _NoBar(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, **kwargs)


_enabled = enabled


def progress(iterable: Iterable[Any], total: Optional[int] = None, desc: str = "", unit: str = "it", enabled: bool = True, **kwargs: Any) -> Iterable[Any]:
    """Iterate ``iterable`` with a bar when bars are on (see the module doc)."""
    return bar(iterable, total=total, desc=desc, unit=unit, enabled=enabled, **kwargs)
