"""osMonitoring agent: collects probe snapshots and pushes them to the collector."""
