"""osMonitoring collector: ingests snapshots, stores them, detects crises, serves the dashboard."""
