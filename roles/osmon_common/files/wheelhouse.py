#!/usr/bin/env python3
"""Build an offline wheelhouse of osMonitoring for target hosts; runs on the Ansible controller.

For each target (Python version, machine, glibc version) it writes one tarball holding the
project's wheel and binary wheels of every dependency (collector extras included) that the
target's Python can install with `pip install --no-index`. Prints JSON on stdout:
{"version": "0.1.0", "archives": {"<target>": "/path/osmonitoring-0.1.0-<target>.tar"}}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# A superset: agent-only hosts install just what the base package needs, a collector on SQLite
# what `collector` adds, one on PostgreSQL also psycopg's binary wheels (`postgresql`).
EXTRAS = "collector,postgresql"


def platforms(machine: str, glibc: str) -> list[str]:
    """Every manylinux tag a glibc of this version accepts, newest first (pip does not expand them)."""
    major, minor = (int(x) for x in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{machine}" for m, name in legacy.items() if minor >= m]
    return tags


def pip(*args: str, check: bool = True) -> bool:
    """Run pip with its output on stderr (stdout carries the result); False if it failed and check is off."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        check=check,
        stdout=sys.stderr,
        stderr=None if check else subprocess.DEVNULL,
    )
    return result.returncode == 0


# Not part of the package; a build in the source tree itself could also pick up a stale build/lib.
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "demo-data"
)


def build(source: Path, dest: Path, targets: list[str]) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="osmon-wheel-") as tmp:
        tree, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        shutil.copytree(source, tree, ignore=IGNORE)
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(tree))
        (project,) = wheels.glob("osmonitoring-*.whl")
        version = project.name.split("-")[1]
        archives = {}
        for target in targets:
            python, machine, glibc = target.split("-")
            deps = dest / "deps" / target
            download = [
                "download", "--quiet", "--dest", str(deps), "--only-binary=:all:",
                "--python-version", python, "--implementation", "cp",
                *(arg for tag in platforms(machine, glibc) for arg in ("--platform", tag)),
                f"osmonitoring[{EXTRAS}] @ {project.as_uri()}",
            ]  # fmt: skip
            # pip download keeps a file of the same name it finds in --dest, metadata included: an
            # earlier build of this same version there would stand in for this one, and a
            # dependency added since would be missing from the tarball.
            for stale in deps.glob("osmonitoring-*.whl"):
                stale.unlink()
            # The wheels already here first: dependencies change only when the project asks for
            # another one (or the cache is cleared), and a re-run needs no index. Isolated from
            # pip's configuration, so that only what is here counts.
            if not pip("--isolated", *download, "--no-index", f"--find-links={deps}", check=False):
                pip(*download)
            archive = dest / f"osmonitoring-{version}-{target}.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(project, arcname=project.name)
                for wheel in sorted(deps.glob("*.whl")):
                    if not wheel.name.startswith("osmonitoring-"):
                        tar.add(wheel, arcname=wheel.name)
            archives[target] = str(archive)
    return {"version": version, "archives": archives}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="the project's source tree")
    parser.add_argument("--dest", type=Path, required=True, help="wheelhouse cache directory")
    parser.add_argument(
        "--target", action="append", required=True, help="PYTHON-MACHINE-GLIBC, e.g. 3.11-x86_64-2.36"
    )
    args = parser.parse_args()
    print(json.dumps(build(args.source.resolve(), args.dest, args.target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
