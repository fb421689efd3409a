"""osMonitoring agent: collects probe snapshots and pushes them to the collector."""

__version__ = "0.1.0"
