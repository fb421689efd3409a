"""What both command lines share: a parser whose usage errors are one line, and the error boundary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns without shutil, which imports bz2, lzma and zlib: 0.7 MB
    of a daemon's resident memory for the width of --help (argparse asks at every add_argument)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, as wide as the terminal (less 2, as argparse does) without shutil."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ):
        super().__init__(
            prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width
        )


class Parser(argparse.ArgumentParser):
    """argparse, with a one-line error that points at --help instead of repeating the usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)  # sub-command parsers are Parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def guarded(prog: str, command: Callable[[], int], expected: dict[type[Exception], str]) -> int:
    """Run a CLI command behind its one error boundary: every expected failure is one line per problem
    (after the prefix `expected` gives its kind) and exit status 2, never a traceback."""
    try:
        return command()
    except BrokenPipeError:
        return quiet_pipe()
    except tuple(expected) as e:
        prefix = next(text for kind, text in expected.items() if isinstance(e, kind))
        fail(prog, f"{prefix}{e}")
    except OSError as e:  # a file named on the command line: missing, unreadable, a directory, /proc ...
        fail(prog, f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror or e))
    return 2


def fail(prog: str, message: str) -> None:
    for line in message.splitlines():
        print(f"{prog}: {line}", file=sys.stderr)


def quiet_pipe() -> int:
    """The reader of our output went away (`| head`): stop without a word, as Unix tools do."""
    # Python would complain again when flushing stdout at exit: point it at /dev/null.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
