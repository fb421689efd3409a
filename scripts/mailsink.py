"""A sendmail-compatible command for the demo: each message read on stdin becomes a file in DIR.

`sendmail = "python scripts/mailsink.py demo-data/mail"` makes the collector's real
mail path (compose, outbox, sendmail transport) end in files a person can open.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: mailsink.py DIR [-t]", file=sys.stderr)
        return 64  # EX_USAGE
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = directory / f"{stamp}-{time.monotonic_ns() % 1_000_000:06d}.eml"
    path.write_bytes(sys.stdin.buffer.read())
    print(f"delivered to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
