"""What every view needs: the collector config and the store, kept on the app (never module globals)."""

from __future__ import annotations

from typing import NamedTuple

from flask import current_app

from collector.config import CollectorConfig
from collector.store import Store
from collector.web.chartcache import ChartCache
from collector.web.exposition import LineStarts
from collector.web.storage import Storage


class Context(NamedTuple):
    config: CollectorConfig
    storage: Storage
    charts: ChartCache
    line_starts: LineStarts  # of /metrics, kept between scrapes


def context() -> Context:
    found: Context = current_app.extensions["osmon"]
    return found


def config() -> CollectorConfig:
    return context().config


def chart_cache() -> ChartCache:
    return context().charts


def store() -> Store:
    """The store, its connection for this thread read-only but for silences."""
    return context().storage.get()
