"""Failed systemd units, from one `systemctl` call per snapshot (two when some unit failed).

`systemctl list-units --failed --output=json` lists them; when there are any, one
`systemctl show` for all of them adds when each entered its state and why. No process
per unit, and nothing at all on a host not booted with systemd.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

# A systemctl that takes longer is stuck on a busy PID 1: skip this snapshot rather than stall it.
TIMEOUT = 5.0
SHOWN = ("Id", "ActiveState", "SubState", "Result", "StateChangeTimestampMonotonic")
DESCRIPTION_CHARS = 120

Run = Callable[[Sequence[str]], str]


class SystemctlError(OSError):
    """systemctl failed or answered something we cannot read."""


def systemctl(args: Sequence[str]) -> str:
    """What `systemctl ARGS` prints (SystemctlError when it fails or hangs)."""
    try:
        done = subprocess.run(
            ["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SystemctlError(f"systemctl: {e}") from None
    if done.returncode != 0:
        raise SystemctlError(f"systemctl {args[0]}: {done.stderr.strip()[:160]}")
    return done.stdout


def booted(run_dir: str = "/run/systemd/system") -> bool:
    """sd_booted(): systemd is PID 1 here (a container or a SysV host is not)."""
    return os.path.isdir(run_dir) and _on_path("systemctl")


def _on_path(program: str) -> bool:
    """shutil.which(program) is not None, without shutil: it imports bz2 and lzma, 0.7 MB of the
    agent's resident memory for one look along PATH."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or os.curdir, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return True
    return False


def _since(monotonic_us: str, now: Callable[[], float], monotonic: Callable[[], float]) -> float | None:
    """The wall-clock instant of a CLOCK_MONOTONIC microsecond stamp (0: never changed)."""
    try:
        stamp = int(monotonic_us)
    except ValueError:
        return None
    return round(now() - (monotonic() - stamp / 1e6), 1) if stamp > 0 else None


def _shown(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show` output, blocks separated by blank lines, by unit Id."""
    units: dict[str, dict[str, str]] = {}
    for block in text.split("\n\n"):
        props = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


def failed_units(
    run: Run = systemctl,
    ignore: Sequence[str] = (),
    now: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """{"failed": [{unit, active, sub, result, since, description}]}, minus units matching `ignore` globs."""
    import json  # here: a host without systemd (a container) never needs it

    try:
        listed = json.loads(run(["list-units", "--failed", "--all", "--output=json"]) or "[]")
    except json.JSONDecodeError as e:
        raise SystemctlError(f"systemctl list-units: not JSON: {e}") from None
    if not isinstance(listed, list):
        raise SystemctlError("systemctl list-units: not a list")
    failed = [
        u
        for u in listed
        if isinstance(u, dict)
        and isinstance(u.get("unit"), str)
        and not any(fnmatchcase(u["unit"], glob) for glob in ignore)
    ]
    shown = (
        _shown(run(["show", f"--property={','.join(SHOWN)}", "--", *(u["unit"] for u in failed)]))
        if failed
        else {}
    )
    result = []
    for u in failed:
        props = shown.get(u["unit"], {})
        result.append(
            {
                "unit": u["unit"],
                "active": props.get("ActiveState", u.get("active")),
                "sub": props.get("SubState", u.get("sub")),
                "result": props.get("Result"),
                "since": _since(props.get("StateChangeTimestampMonotonic", ""), now, monotonic),
                "description": str(u.get("description") or "")[:DESCRIPTION_CHARS],
            }
        )
    return {"failed": result}
