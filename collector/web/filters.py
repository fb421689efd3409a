"""Jinja filters that format numbers and instants the way static/live.js does after a refresh."""

from __future__ import annotations

import time
from urllib.parse import quote

from flask import Flask, g, url_for
from markupsafe import Markup

from collector.timefmt import iso
from collector.units import binary
from collector.web.charts import rate

DASH = "\N{EN DASH}"  # shown for a value the host did not report


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} %"


def size(value: float | None) -> str:
    """Bytes in binary units."""
    return DASH if value is None else binary(value)


def decimal(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def duration(seconds: float | None) -> str:
    """'45 s', '12 min', '5 h 3 min', '3 d 4 h'."""
    if seconds is None:
        return DASH
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def every(seconds: float | None) -> str:
    """An agent's interval: '200 ms', '2.5 s', '10 s', '5 min' (duration() would say '0 s' below a second)."""
    if seconds is None:
        return DASH
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    return duration(seconds)


def ago(seconds: float | None) -> str:
    return DASH if seconds is None else f"{duration(seconds)} ago"


def clock(ts: float | None) -> str:
    """Local date and time of the server, to the minute."""
    return DASH if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def local_input(ts: float | None) -> str:
    """The value of a date and time input: the server's wall clock, to the minute, as `clock` shows it."""
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def utc_offset() -> int:
    """The server's current offset from UTC, seconds: live.js formats instants in the same zone."""
    return time.localtime().tm_gmtoff


def tz_name() -> str:
    return time.strftime("%Z")


def meter(value: float | None) -> Markup:
    """A bar filled to `value` %, coloured from 80 and 95 %, and the number (as live.js's meter())."""
    if value is None:
        return Markup(f'<span class="muted">{DASH}</span>')
    level = " meter-critical" if value >= 95 else " meter-warning" if value >= 80 else ""
    return Markup(  # only numbers go in: nothing to escape
        f'<span class="meter{level}"><span class="meter-fill" style="width: {min(value, 100.0):.1f}%">'
        f'</span></span><span class="meter-text">{percent(value)}</span>'
    )


def host_url(name: str) -> str:
    """url_for("pages.host", name=name), quoted the same way, at a fraction of url_for's cost:
    the overview links every host of the fleet (url_for was a third of its time with 1,000)."""
    base = g.get("host_url_base")
    if base is None:
        base = g.host_url_base = url_for("pages.host", name="-")[:-1]
    return base + quote(name, safe="!$&'()*+,/:;=@")  # werkzeug's path-segment quoting


def register(app: Flask) -> None:
    app.jinja_env.filters.update(
        percent=percent,
        size=size,
        rate=lambda v: DASH if v is None else rate(v),
        decimal=decimal,
        duration=duration,
        every=every,
        meter=meter,
        ago=ago,
        clock=clock,
        local_input=local_input,
        iso=lambda ts: "" if ts is None else iso(ts),
        host_url=host_url,
    )
    app.jinja_env.globals.update(utc_offset=utc_offset, tz_name=tz_name)
