"""What every view needs: the collector config and the store, kept on the app (never module globals)."""

from __future__ import annotations

from typing import Any, NamedTuple

from flask import current_app

from collector.config import CollectorConfig
from collector.web.chartcache import ChartCache
from collector.web.storage import Storage


class Context(NamedTuple):
    config: CollectorConfig
    storage: Storage
    charts: ChartCache


def context() -> Context:
    return current_app.extensions["osmon"]


def config() -> CollectorConfig:
    return context().config


def chart_cache() -> ChartCache:
    return context().charts


def store() -> Any:
    """The store (a SQLiteStore: its web_* reads, alerts, silences, CERT-FR, counters)."""
    return context().storage.get()
