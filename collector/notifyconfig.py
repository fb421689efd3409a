"""The [[notify.webhook]] and [[notify.alertmanager]] tables of collector.toml.

A URL in an error is shown masked (collector.httppost.shown): its user information
or its path (Slack's) may be a secret.
"""

from __future__ import annotations

import re
from typing import Any

from collector import httppost
from collector.alertmanager import Alertmanager
from collector.webhook import FORMATS, Webhook
from osmon.configfile import at_least, http_url, parse_duration

_HOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOOK_KEYS = ("name", "url", "format", "secret_file", "hosts", "ca_file", "timeout")


def _tables(value: object, what: str, keys: tuple[str, ...]) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError(f"expected [[{what}]] tables")
    for i, table in enumerate(value):
        unknown = sorted(set(table) - set(keys))
        if unknown:
            raise ValueError(f"table {i + 1}: unknown key {unknown[0]!r} (known: {', '.join(keys)})")
        if "url" not in table:
            raise ValueError(f"table {i + 1}: needs 'url'")
    return value


def _url(value: object, where: str) -> str:
    """An http(s) URL; an error shows it masked (its user information or path may be a secret)."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: url: expected a string")
    try:
        http_url(value)
    except ValueError:
        raise ValueError(
            f"{where}: url: expected an http:// or https:// URL, got {httppost.shown(value)}"
        ) from None
    return value


def webhooks(value: object) -> list[Webhook]:
    """The [[notify.webhook]] tables."""
    parsed: list[Webhook] = []
    for i, table in enumerate(_tables(value, "notify.webhook", _HOOK_KEYS)):
        name = table.get("name")
        if not isinstance(name, str) or not _HOOK_NAME.match(name):
            raise ValueError(f"table {i + 1}: name: expected letters, digits, '.', '-' or '_', got {name!r}")
        if any(hook.name == name for hook in parsed):
            raise ValueError(f"webhook {name!r}: two webhooks of that name")
        where = f"webhook {name!r}"
        fmt = table.get("format", "json")
        if fmt not in FORMATS:
            raise ValueError(f"{where}: format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        optional: dict[str, Any] = {}
        for key in ("secret_file", "hosts", "ca_file"):
            if key in table:
                if not isinstance(table[key], str) or not table[key]:
                    raise ValueError(f"{where}: {key}: expected a non-empty string")
                optional[key] = table[key]
        if "timeout" in table:
            try:
                optional["timeout"] = at_least(1, parse_duration)(table["timeout"])
            except ValueError as e:
                raise ValueError(f"{where}: timeout: {e}") from None
        parsed.append(Webhook(name, _url(table["url"], where), fmt, **optional))
    return parsed


def alertmanagers(value: object) -> list[Alertmanager]:
    """The [[notify.alertmanager]] tables."""
    parsed = []
    for i, table in enumerate(_tables(value, "notify.alertmanager", ("url", "ca_file"))):
        ca_file = table.get("ca_file")
        if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
            raise ValueError(f"table {i + 1}: ca_file: expected a non-empty string")
        parsed.append(Alertmanager(_url(table["url"], f"alertmanager {i + 1}").rstrip("/"), ca_file))
    return parsed
