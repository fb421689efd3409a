"""A faster attribute lookup for pygal's graphs, doing exactly what pygal 3's own does.

While a chart is drawn, pygal's `BaseGraph.__getattribute__` answers every
attribute read, several per plotted value, in Python code that fetches
`state` again through the same method each time. On a host page drawn cold
that lookup was about half of the time. The replacement reads the same
places in fewer steps: names starting with "__", and `state` itself, from the
graph; any other name from the rendering state when the state holds it, else
from the graph. It is installed only for the pygal releases it was checked
against; tests draw charts with and without it and compare the SVG.
"""

from __future__ import annotations

from typing import Any

import pygal
from pygal.graph.base import BaseGraph

CHECKED = ("3.0.", "3.1.")  # pygal releases whose BaseGraph.__getattribute__ this mirrors
ORIGINAL = BaseGraph.__getattribute__
_get = object.__getattribute__


def lookup(self: BaseGraph, name: str) -> Any:
    if name[:2] != "__" and name != "state":
        state = _get(self, "__dict__").get("state")
        if state is not None:
            values = state.__dict__  # a pygal.state.State: a plain object, no descriptors
            if name in values:
                return values[name]
    return _get(self, name)


def install() -> bool:
    """Use `lookup` for every pygal graph; False (and pygal's own kept) for an unchecked release."""
    if not pygal.__version__.startswith(CHECKED):
        return False
    BaseGraph.__getattribute__ = lookup
    return True


def uninstall() -> None:
    BaseGraph.__getattribute__ = ORIGINAL
