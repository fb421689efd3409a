"""osMonitoring's core: what the agent and the collector share, importing neither.

The wire format, the metric catalog, config-file parsing, CurveZMQ keys,
signal handling, and the version.
"""

__version__ = "0.1.0"
