"""Text from peers made safe for a terminal or a log: control characters escaped, visibly.

A mount name with a newline forged a log line, and `alerts` printed an agent's ESC sequences
raw to the operator's terminal. Every character that moves the cursor, changes colours, ends
a line or reorders text is shown as an escape instead (`\\n`, `\\x1b`, `\\u202e`).
"""

from __future__ import annotations

import logging

# C0 controls, DEL, C1 controls, and the Unicode line separators and bidirectional overrides.
_CONTROLS = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_TABLE = str.maketrans({c: repr(chr(c))[1:-1] if c < 0x100 else f"\\u{c:04x}" for c in _CONTROLS})


def printable(text: object) -> str:
    """`text` as a string with every control character escaped (a backslash itself is kept)."""
    return str(text).translate(_TABLE)


class PrintableFormatter(logging.Formatter):
    """Escapes control characters in each record's message; a traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def escape_logs() -> None:
    """Make every handler of the root logger escape control characters in messages."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter or logging.Formatter()
        printable_formatter = PrintableFormatter(formatter._fmt, formatter.datefmt)
        handler.setFormatter(printable_formatter)
