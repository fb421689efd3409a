"""The dashboard as a person sees it: headless Chromium against real agents, a real collector and the
real `osmon-collector web` process (waitress), all on 127.0.0.1.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright's Python package; no browser is ever
downloaded. Every page a test opens is watched: a request to any host but 127.0.0.1 is refused and
fails the test (the dashboard must work air-gapped), and so does a JavaScript error or a console
error (a script or style blocked by the Content-Security-Policy shows up there).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from collector.store import open_store
from collector.web import series
from tests.conftest import BIN, Cluster, wait_for

CHROMIUM = Path(os.environ.get("OSMON_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENS = Path("/tmp/osmon-screens")  # the newest screenshots, kept for people to look at
TIMEOUT_MS = 20_000
PASSWORD = "browser test password"
CHARTS = len(series.CHARTS)

ROWS = "#hosts tbody tr[data-host]"


def row(host: str) -> str:
    return f'#hosts tbody tr[data-host="{host}"]'


# -- the browser and its watched pages --------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per module; each test gets its own context (cookies, cache) from it."""
    if not CHROMIUM.is_file():
        pytest.skip(f"headless browser tests need Chromium at {CHROMIUM} (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("headless browser tests need the `playwright` Python package (pip install -e .[dev])")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Watch:
    """Everything a page asked for, and every error it showed in its console."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # (method, url, POST body)
        self.foreign: list[str] = []
        self.errors: list[str] = []

    def route(self, route: Any) -> None:
        request = route.request
        self.requests.append((request.method, request.url, request.post_data))
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            self.foreign.append(request.url)
            route.abort("blockedbyclient")  # air-gapped: the dashboard must not need it

    def paths(self, method: str = "GET") -> list[str]:
        return [urlsplit(url).path for m, url, _ in self.requests if m == method]

    def check(self) -> None:
        assert self.requests, "the page made no request at all"
        assert self.foreign == [], f"requests to hosts other than 127.0.0.1: {self.foreign}"
        for _, url, _ in self.requests:
            assert urlsplit(url).scheme in ("http", "data", "blob", "about"), url
        assert self.errors == [], f"errors in the page: {self.errors}"


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(chromium: Any, watch: Watch) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", watch.route)
    tab = context.new_page()
    tab.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
    tab.on("console", lambda m: watch.errors.append(f"console: {m.text}") if m.type == "error" else None)
    try:
        yield tab
    finally:
        context.close()
    watch.check()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page PNG in the test's directory, copied to SCREENS; checked to be a real picture."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    viewport = page.viewport_size
    assert width == viewport["width"] and height >= viewport["height"] * 0.7, (width, height)
    assert len(data) > 20_000, f"{path}: {len(data)} bytes, an empty-looking page"
    try:
        SCREENS.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENS / name)
    except OSError:
        pass  # only a convenience for people; the test's own copy is what counts
    return path


def reported(cluster: Cluster, hosts: list[str]) -> None:
    """Wait until the collector has stored snapshots of every host (`osmon-collector status`)."""

    def stored() -> bool:
        try:
            return {h["host"] for h in cluster.status()} >= set(hosts)
        except subprocess.CalledProcessError:  # the collector is still creating the database
            return False

    wait_for(stored, what=f"{hosts} to report")


def serving(url: str) -> None:
    """Wait until the dashboard can read the database (the collector creates it when it starts)."""

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:  # HTTPError 503 included
            return False

    wait_for(healthy, what="the dashboard to read the collector's database")


def refreshed_at(page: Any) -> int:
    return int(page.evaluate("document.body.dataset.refreshed || 0"))


# -- the tests ----------------------------------------------------------------------------------------


def test_the_overview_lists_every_host_with_its_status(
    cluster: Cluster, page: Any, watch: Watch, tmp_path: Path
) -> None:
    hosts = ["web-01", "web-02", "db-01"]
    _, url = cluster.web('anonymous_read = true\nrefresh = "1s"')
    cluster.collector()
    serving(url)

    # Opened before any agent runs: the table fills in place from /api/hosts as they report.
    page.goto(url + "/")
    expect(page.locator("#no-hosts")).to_be_visible()
    assert page.locator(ROWS).count() == 0
    for host in hosts:
        cluster.agent(host, interval=0.2)
    expect(page.locator(ROWS)).to_have_count(3, timeout=TIMEOUT_MS)
    for host in hosts:
        expect(page.locator(f"{row(host)} .c-cpu .meter-text")).to_be_visible()  # numbers arrived too
    assert sorted(page.locator(ROWS).evaluate_all("rows => rows.map(r => r.dataset.host)")) == sorted(hosts)

    shown = {host: page.locator(f"{row(host)} .status-badge").text_content().strip() for host in hosts}
    assert set(shown.values()) <= {"ok", "warning", "critical"}, shown  # up, whatever this machine's load
    for host, status in shown.items():
        assert page.locator(row(host)).get_attribute("data-status") == status
        link = page.locator(f"{row(host)} .c-name a")
        assert link.text_content() == host and link.get_attribute("href") == f"/host/{host}"
    counts = {
        s: int(page.locator(f'#counts [data-count="{s}"]').text_content())
        for s in ("ok", "warning", "critical", "down")
    }
    assert sum(counts.values()) == 3 and counts["down"] == 0
    expect(page.locator('#counts [data-count="silenced"]')).to_have_text("0")

    # Live: the page keeps refreshing from the JSON API, and says when it last did.
    first = refreshed_at(page)
    assert first > 0
    page.wait_for_function("t => Number(document.body.dataset.refreshed) > t", arg=first)
    expect(page.locator("#refreshed")).to_contain_text("Updated")
    assert watch.paths().count("/api/hosts") >= 2
    assert watch.paths().count("/") == 1  # ... and never reloaded itself

    # The name filter narrows the table.
    page.fill("#filter", "web-")
    expect(page.locator(f"{ROWS}:visible")).to_have_count(2)
    page.fill("#filter", "")
    expect(page.locator(f"{ROWS}:visible")).to_have_count(3)

    screenshot(page, tmp_path, "overview.png")


def test_a_page_opened_before_the_database_exists_shows_the_hosts_once_it_does(
    cluster: Cluster, page: Any, watch: Watch
) -> None:
    _, url = cluster.web('anonymous_read = true\nrefresh = "1s"')  # no collector yet: no database
    response = page.goto(url + "/")
    assert response is not None and response.status == 503
    expect(page.locator("#error")).to_contain_text("Database unavailable")
    expect(page.locator("#retrying")).to_be_visible()

    cluster.collector()
    cluster.agent("web-01", interval=0.5)
    expect(page.locator(ROWS)).to_have_count(1, timeout=TIMEOUT_MS)  # reloaded by itself, then filled
    assert urlsplit(page.url).path == "/"
    # Chromium logs each 503 (the page, then /healthz while it retried): expected here, and nothing else.
    watch.errors = [e for e in watch.errors if "status of 503" not in e]


def test_a_host_page_draws_charts_with_data_and_redraws_them_in_place(
    cluster: Cluster, page: Any, watch: Watch, tmp_path: Path
) -> None:
    _, url = cluster.web('anonymous_read = true\nrefresh = "1s"')
    cluster.collector()
    cluster.agent("web-01", interval=0.2)
    reported(cluster, ["web-01"])

    page.goto(url + "/host/web-01?range=1h")
    expect(page.locator("#host-name")).to_have_text("web-01")
    expect(page.locator("#host-status .status-badge")).not_to_have_text("down")
    expect(page.locator("#ranges a[aria-current]")).to_have_text("1h")
    expect(page.locator("#charts figure[data-chart] svg.chart")).to_have_count(CHARTS)
    page.evaluate("window.osmonMarker = 'not reloaded'")
    first_ids = page.locator("#charts svg.chart").evaluate_all("svgs => svgs.map(s => s.id)")

    # The 1h range buckets per 15 s: the charts are redrawn from /api/hosts/<name>/charts every 15 s.
    # Wait for that redraw, and until every chart has at least two points on each of its lines.
    drawn = """([ids, count]) => {
        const svgs = [...document.querySelectorAll('#charts figure[data-chart] svg.chart')];
        if (svgs.length !== count || svgs.some((s, i) => s.id === ids[i])) return false;
        return svgs.every(svg => {
            const lines = [...svg.querySelectorAll('g.series path.line.reactive')];
            const numbers = JSON.parse(svg.parentNode.dataset.points).series;  // what the tooltip shows
            return lines.length > 0 && numbers.every(n => n.values.filter(v => v !== null).length >= 2)
                && !svg.querySelector('text.no_data')
                && lines.every(l => l.getBBox().width > 0 && l.getAttribute('d').split(/[ML]/).length > 2);
        });
    }"""
    # Per-core lines come from the minute tier: their second point comes with the agent's second minute.
    page.wait_for_function(drawn, arg=[first_ids, CHARTS], timeout=120_000)
    assert page.evaluate("window.osmonMarker") == "not reloaded"
    assert "/api/hosts/web-01/charts" in watch.paths()
    assert watch.paths().count("/host/web-01") == 1

    for chart in ("cpu", "memory", "load"):
        figure = page.locator(f"#chart-{chart}")
        box = figure.locator("svg.chart").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, (chart, box)
    legends = page.locator("#chart-cpu svg.chart .legend").all_text_contents()
    assert [t.strip() for t in legends] == ["total", "iowait"]

    # Pointing at a chart shows every line's value at that time, from the dashboard's own script
    # (pygal's would be fetched from a CDN): here, the newest point of the memory line.
    line = page.locator("#chart-memory svg.chart g.serie-0 path.line").last.bounding_box()
    assert line is not None
    page.mouse.move(line["x"] + line["width"] - 1, line["y"] + line["height"] / 2)
    tip = page.locator(".chart-tip")
    expect(tip).to_be_visible()
    expect(tip.locator("tr")).to_have_count(2)
    expect(tip.locator("tr").first).to_contain_text("memory")
    expect(tip.locator("tr").last).to_contain_text("swap")
    expect(tip.locator(".tip-value").first).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(tip.locator(".tip-time")).to_contain_text("max of 15 s")
    expect(page.locator("#chart-memory .crosshair circle")).to_have_count(2)  # a dot on each line
    page.mouse.move(5, 5)
    expect(tip).to_be_hidden()

    # The live summary refreshes too.
    expect(page.locator('#summary [data-field="cpu"] .meter-text')).to_contain_text("%")
    expect(page.locator('#facts [data-fact="cpus"]')).not_to_have_text("\u2013")  # an en dash: no data
    screenshot(page, tmp_path, "host.png")


def test_a_stopped_agent_turns_down_on_screen_without_a_reload(
    cluster: Cluster, page: Any, watch: Watch
) -> None:
    hosts = ["web-01", "web-02", "db-01"]
    # Interval 1 s, down after 3 of them: a busy 2-core machine does not make the others flap.
    _, url = cluster.web('anonymous_read = true\nrefresh = "1s"', extra="[alerts]\ndown_after = 3\n")
    cluster.collector()
    agents = {host: cluster.agent(host, interval=1.0) for host in hosts}
    serving(url)

    page.goto(url + "/")
    expect(page.locator(ROWS)).to_have_count(3)
    for host in hosts:
        expect(page.locator(f"{row(host)} .status-badge")).not_to_have_text("down")
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )
    page.evaluate("window.osmonMarker = 'not reloaded'")
    before = refreshed_at(page)

    assert agents["web-02"].terminate() == 0  # SIGTERM: the agent stops cleanly and sends nothing more
    stopped = time.monotonic()
    expect(page.locator(f"{row('web-02')} .status-badge")).to_have_text("down", timeout=TIMEOUT_MS)
    took = time.monotonic() - stopped

    assert page.evaluate("window.osmonMarker") == "not reloaded" and navigations == []
    assert refreshed_at(page) > before
    assert watch.paths().count("/") == 1
    assert page.locator(row("web-02")).get_attribute("data-status") == "down"
    assert page.locator(ROWS).first.get_attribute("data-host") == "web-02"  # most urgent first
    expect(page.locator('#counts [data-count="down"]')).to_have_text("1")
    for host in ("web-01", "db-01"):
        expect(page.locator(f"{row(host)} .status-badge")).not_to_have_text("down")
    # The collector's host.down alert reaches the same page, still without a reload.
    expect(page.locator("#active-alerts li", has_text="web-02")).to_contain_text("Host down")
    assert page.evaluate("window.osmonMarker") == "not reloaded" and navigations == []
    print(f"web-02 shown down {took:.1f} s after SIGTERM (down after 3 s, refresh 1 s)")


def test_a_silence_made_in_the_ui_shows_up(cluster: Cluster, page: Any, watch: Watch) -> None:
    hashed = subprocess.run(
        [str(BIN / "osmon-collector"), "hash-password"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    # No anonymous reading here: everything goes through the login form.
    _, url = cluster.web(f'refresh = "1s"\n[web.users]\nops = "{hashed}"')
    cluster.collector()
    for host in ("web-01", "web-02"):
        cluster.agent(host, interval=0.2)
    reported(cluster, ["web-01", "web-02"])

    page.goto(url + "/alerts")
    assert urlsplit(page.url).path == "/login" and parse_qs(urlsplit(page.url).query)["next"] == ["/alerts"]
    page.fill('#login-form input[name="user"]', "ops")
    page.fill('#login-form input[name="password"]', PASSWORD)
    page.click('#login-form button[type="submit"]')
    page.wait_for_url(url + "/alerts")
    expect(page.locator(".who .user")).to_have_text("ops")

    form = page.locator("#silence-form")
    form.locator('input[name="host"]').fill("web-02")
    form.locator('input[name="duration"]').fill("30m")
    form.locator('input[name="reason"]').fill("kernel upgrade")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token and form.locator('input[name="csrf_token"]').input_value() == token
    form.locator('button[type="submit"]').click()
    page.wait_for_url(url + "/alerts")

    [(_, _, body)] = [
        r for r in watch.requests if r[0] == "POST" and urlsplit(r[1]).path == "/alerts/silence"
    ]
    assert parse_qs(body or "")["csrf_token"] == [token]  # the form POST carried the session's token
    expect(page.locator(".banner-ok")).to_have_text("web-02 silenced.")
    silenced = page.locator('#silences tbody tr[data-host="web-02"]')
    expect(silenced).to_contain_text("kernel upgrade (by ops)")
    expect(page.locator("#silences tbody tr")).to_have_count(1)

    # The collector's database holds it: the collector stops mailing web-02's alerts.
    [silence] = open_store(cluster.dir / "osmon.db", readonly=True).silences(time.time())
    assert silence.host == "web-02" and silence.reason == "kernel upgrade (by ops)"
    assert 29 * 60 < silence.until - time.time() <= 30 * 60

    page.goto(url + "/")
    # A silence marks the host; its status stays what it is (and counts as such).
    expect(page.locator(f"{row('web-02')} .silence-mark")).to_have_text("silenced")
    expect(page.locator(f"{row('web-02')} .status-badge")).not_to_have_text("silenced")
    expect(page.locator(f"{row('web-01')} .silence-mark")).to_have_count(0)
    expect(page.locator('#counts [data-count="silenced"]')).to_have_text("1")
    page.goto(url + "/host/web-02")
    expect(page.locator("#host-silence .silence-mark")).to_be_visible()
    expect(page.locator("#host-status .status-badge")).not_to_have_text("silenced")
    expect(page.locator("#silence")).to_contain_text("kernel upgrade (by ops)")

    # Lifting it from the host page: gone from the store, and the overview shows the host up again.
    page.locator("#silence .unsilence-form button").click()
    page.wait_for_url(url + "/host/web-02")
    expect(page.locator(".banner-ok")).to_have_text("web-02: silence lifted.")
    assert open_store(cluster.dir / "osmon.db", readonly=True).silences(time.time()) == []
    page.goto(url + "/")
    expect(page.locator(f"{row('web-02')} .silence-mark")).to_have_count(0)
    expect(page.locator('#counts [data-count="silenced"]')).to_have_text("0")


# -- a host with an alert in its history: thresholds, shading, zoom, the shared crosshair ---------------


def alerted_history(database: Path, now: float) -> float:
    """web-01 over the last 2 hours (a snapshot a minute) with memory above 80 % then 95 % for the
    half hour before the previous hour ended (less 5 minutes), and that alert's events; web-02 silenced with a critical alert.
    Returns when web-01's alert started."""
    from collector.store import AlertEvent
    from tests.test_web import received

    store = open_store(database)
    # Ended 5 minutes before the current hour began, whatever the time of day: the fleet strip's
    # last hour then holds web-02's alert alone (a fixed "40 minutes ago" failed before HH:40).
    ended = now // 3600 * 3600 - 5 * 60
    started, worst = ended - 30 * 60, ended - 20 * 60

    def mem(t: float) -> float:
        return 97.0 if worst <= t < ended else 88.0 if started <= t < ended else 45.0

    batch = [
        received("web-01", i + 1, now - (119 - i) * 60, 60.0, mem=mem(now - (119 - i) * 60))
        for i in range(120)
    ]
    batch += [received("web-02", i + 1, now - (9 - i) * 60, 60.0, mounts={"/": 97.0}) for i in range(10)]
    store.ingest(batch)
    store.alerts_apply(
        [
            AlertEvent("fired", "web-01", "mem.percent", "warning", started, 88.0, 80.0),
            AlertEvent("escalated", "web-01", "mem.percent", "critical", worst, 97.0, 95.0),
            AlertEvent("resolved", "web-01", "mem.percent", "critical", ended, 45.0, 95.0),
            AlertEvent("fired", "web-02", "disk.percent:/", "critical", now - 300, 97.0, 95.0),
        ],
        [],
    )
    store.silence("web-02", now + 3600, "disk replacement", now)
    store.close()
    return started


def close_up(locator: Any, tmp_path: Path, name: str) -> None:
    """A PNG of one element at its real size (a full page of a phone is too tall to look at whole)."""
    locator.screenshot(path=str(tmp_path / name))
    try:
        SCREENS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / name, SCREENS / name)
    except OSError:
        pass


def viewport(page: Any, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})


def test_alerts_on_the_charts_zoom_and_a_shared_crosshair(
    cluster: Cluster, page: Any, watch: Watch, tmp_path: Path
) -> None:
    now = time.time()
    started = alerted_history(cluster.dir / "osmon.db", now)
    _, url = cluster.web('anonymous_read = true\nrefresh = "5s"')
    serving(url)

    # The overview: the silenced host keeps its status, with a mark; its alert reads in words.
    viewport(page, 1366, 768)
    page.goto(url + "/")
    expect(page.locator(ROWS)).to_have_count(2)
    expect(page.locator(f"{row('web-02')} .status-badge")).to_have_text("critical")
    expect(page.locator(f"{row('web-02')} .silence-mark")).to_be_visible()
    expect(page.locator('#counts [data-count="critical"]')).to_have_text("1")
    expect(page.locator("#active-alerts li")).to_contain_text("Disk /")
    expect(page.locator("#active-alerts li")).to_contain_text("97.0 % ≥ 95 %")
    screenshot(page, tmp_path, "overview-1366.png")

    # The host page over 6 h: threshold lines, and the alert's period shaded on the memory chart.
    page.goto(url + "/host/web-01?range=6h")
    memory = page.locator("#chart-memory svg.chart")
    expect(memory.locator(".level-warning line")).to_have_count(2)  # memory 80 %, swap 50 %
    expect(memory.locator(".level-critical line")).to_have_count(2)
    band = memory.locator("a.band-critical rect")
    expect(band).to_have_count(1)
    box, plot = band.bounding_box(), memory.locator("g.plot > rect.background").bounding_box()
    assert box and plot and 0.05 * plot["width"] < box["width"] < 0.2 * plot["width"], (
        box,
        plot,
    )  # 30 of 360 min
    expect(page.locator("#chart-cpu svg.chart a.band-critical")).to_have_count(0)  # memory's, not CPU's
    history = page.locator("#host-alerts tr[data-alert]")
    expect(history.locator(".events li")).to_have_count(3)  # fired, escalated, resolved
    expect(history.locator(".events li").nth(1)).to_contain_text("escalated critical 97.0 %")

    # One crosshair for the page: pointing at one chart marks the same time on every other one.
    line = memory.locator("g.serie-0 path.line").first.bounding_box()
    assert line is not None
    page.mouse.move(line["x"] + line["width"] * 0.5, line["y"] + line["height"] / 2)
    expect(page.locator(".chart-tip")).to_be_visible()
    expect(page.locator("#charts svg.chart .crosshair.shared")).to_have_count(CHARTS - 1)
    xs = page.locator("#charts svg.chart .crosshair line").evaluate_all(
        "ls => ls.map(l => l.getBoundingClientRect().x - l.closest('svg').getBoundingClientRect().x)"
    )
    widths = page.locator("#charts svg.chart").evaluate_all(
        "s => s.map(x => x.getBoundingClientRect().width)"
    )
    # Same instant, same place on charts of the same width (the grid lays them out alike).
    assert max(xs) - min(xs) < 0.05 * max(widths), xs
    screenshot(page, tmp_path, "host-1366.png")
    page.mouse.move(5, 5)

    # Zoom: dragging across a chart shows that span on every chart, and the URL holds it.
    cpu = page.locator("#chart-cpu svg.chart g.plot > rect.background").bounding_box()
    assert cpu is not None
    y = cpu["y"] + cpu["height"] / 2
    page.mouse.move(cpu["x"] + cpu["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(cpu["x"] + cpu["width"] * 0.8, y, steps=5)
    page.mouse.up()
    page.wait_for_url(re.compile(r"/host/web-01\?from=\d+&to=\d+$"))
    query = parse_qs(urlsplit(page.url).query)
    start, end = float(query["from"][0]), float(query["to"][0])
    assert 0.15 * 6 * 3600 < end - start < 0.25 * 6 * 3600, end - start  # a fifth of 6 h
    t0s = page.locator("#charts svg.chart g.plot[data-t0]").evaluate_all(
        "gs => gs.map(g => Number(g.dataset.t0))"
    )
    assert len(t0s) == CHARTS and len(set(t0s)) == 1 and start - 300 <= t0s[0] <= start, (t0s, start)
    expect(page.locator("#ranges a[aria-current]")).to_have_count(0)
    expect(page.locator("#back-live")).to_be_visible()
    expect(page.locator('#custom-range input[name="from"]')).to_have_value(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")
    )
    # The same link shows the same view; the minus button zooms out around it, "back to live" returns to now.
    zoomed = page.url
    page.click("#zoom-out")
    page.wait_for_url(lambda u: u != zoomed)
    query = parse_qs(urlsplit(page.url).query)
    assert float(query["to"][0]) - float(query["from"][0]) == pytest.approx(2 * (end - start), abs=2)
    page.click("#back-live")
    expect(page.locator("#ranges a[aria-current]")).to_have_text("6h")

    # From an alert to its moment: the host page around its start, the period shaded.
    page.locator("#host-alerts a.alert-moment").first.click()
    page.wait_for_url(re.compile(rf"/host/web-01\?at={started:.0f}$"))
    expect(page.locator("#chart-memory svg.chart a.band-critical rect")).to_have_count(1)
    t0, t1 = page.locator("#chart-memory g.plot[data-t0]").evaluate(
        "g => [Number(g.dataset.t0), Number(g.dataset.t1)]"
    )
    assert t0 < started < t1 and t1 - t0 <= 1.1 * 3600, (t0, started, t1)  # an hour around it

    # A phone: chart text at least 11 px, tables scroll inside their panel, the page never sideways.
    viewport(page, 390, 844)
    page.goto(url + "/host/web-01?range=6h")
    sizes = page.locator("#charts svg.chart text").evaluate_all(
        """ts => ts.filter(t => t.getClientRects().length && t.textContent.trim()).map(t => {
            const svg = t.closest('svg');
            return parseFloat(getComputedStyle(t).fontSize) * svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        })"""
    )
    assert sizes and min(sizes) >= 11, min(sizes)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    wrap = page.locator("#host-alerts .table-wrap")
    assert wrap.evaluate("w => w.scrollWidth > w.clientWidth && getComputedStyle(w).overflowX === 'auto'")
    screenshot(page, tmp_path, "host-390.png")
    close_up(page.locator("#chart-memory"), tmp_path, "host-390-memory.png")
    page.goto(url + "/")
    expect(page.locator(ROWS)).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, tmp_path, "overview-390.png")


def test_memory_in_bytes_and_a_disk_or_an_interface_picked_in_the_url(
    cluster: Cluster, page: Any, watch: Watch, tmp_path: Path
) -> None:
    alerted_history(cluster.dir / "osmon.db", time.time())  # web-01: disks vda, vdb; interfaces eth0, eth1
    _, url = cluster.web('anonymous_read = true\nrefresh = "5s"')
    serving(url)
    viewport(page, 1366, 768)
    page.goto(url + "/host/web-01?range=6h")

    # Memory in bytes beside the percentages: used, cached and available, on an axis in GiB.
    memory = page.locator("#chart-memory_bytes svg.chart")
    expect(memory.locator("g.series path.line")).to_have_count(3)
    assert [t.strip() for t in memory.locator(".legend").all_text_contents()] == [
        "used",
        "cached",
        "available",
    ]
    assert any("GiB" in t for t in memory.locator(".axis.y text").all_text_contents())
    line = memory.locator("g.serie-0 path.line").first.bounding_box()
    assert line is not None
    page.mouse.move(line["x"] + line["width"] - 1, line["y"] + line["height"] / 2)
    expect(page.locator(".chart-tip tr")).to_have_count(3)
    expect(page.locator(".chart-tip .tip-value").first).to_have_text(re.compile(r"^\d+\.\d GiB$"))
    page.mouse.move(5, 5)

    # Picking a disk draws its own rates instead of the totals, and the URL says so.
    disk = page.locator("#chart-diskio")
    pick = disk.locator("form.entity-pick select")
    expect(disk.locator("svg.chart text.plot_title")).to_have_text("Disk I/O")
    expect(disk.locator("form.entity-pick button")).to_be_hidden()  # the script picks on change
    totals = disk.get_attribute("data-points")
    pick.select_option("vdb")
    page.wait_for_url(re.compile(r"/host/web-01\?range=6h&device=vdb$"))
    expect(disk.locator("svg.chart text.plot_title")).to_have_text("Disk I/O: vdb")
    expect(pick).to_have_value("vdb")
    assert disk.get_attribute("data-points") != totals
    vdb = disk.evaluate(
        "f => JSON.parse(f.dataset.points).series.map(s => [s.label, [...new Set(s.values.filter(v => v !== null))]])"
    )
    assert vdb == [["read", [400]], ["write", [500]]]
    # The interface too; both stay picked when zooming, and the same link shows the same view.
    page.locator("#chart-network form.entity-pick select").select_option("eth1")
    page.wait_for_url(re.compile(r"/host/web-01\?range=6h&device=vdb&interface=eth1$"))
    expect(page.locator("#chart-network svg.chart text.plot_title")).to_have_text("Network: eth1")
    screenshot(page, tmp_path, "host-picked-1366.png")
    page.click("#zoom-in")
    page.wait_for_url(re.compile(r"\?from=\d+&to=\d+&device=vdb&interface=eth1$"))
    expect(page.locator("#chart-diskio svg.chart text.plot_title")).to_have_text("Disk I/O: vdb")
    # All disks again: the totals, and the device is gone from the URL.
    page.locator("#chart-diskio form.entity-pick select").select_option("")
    page.wait_for_url(re.compile(r"\?from=\d+&to=\d+&interface=eth1$"))
    expect(page.locator("#chart-diskio svg.chart text.plot_title")).to_have_text("Disk I/O")

    # A phone: the pickers fit, the page never scrolls sideways.
    viewport(page, 390, 844)
    page.goto(url + "/host/web-01?range=6h&device=vda")
    expect(page.locator("#chart-diskio form.entity-pick select")).to_have_value("vda")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, tmp_path, "host-picked-390.png")
    close_up(page.locator("#chart-memory_bytes"), tmp_path, "host-390-memory-bytes.png")
    close_up(page.locator("#chart-diskio"), tmp_path, "host-390-diskio-vda.png")


def test_trend_lines_per_host_and_the_fleet_strip_at_both_sizes(
    cluster: Cluster, page: Any, watch: Watch, tmp_path: Path
) -> None:
    now = time.time()
    started = alerted_history(cluster.dir / "osmon.db", now)
    _, url = cluster.web("anonymous_read = true")
    serving(url)
    sizes = """imgs => imgs.map(i => [i.complete && i.naturalWidth, Math.round(i.getBoundingClientRect().width),
                                   Math.round(i.getBoundingClientRect().height)])"""
    for width, height in ((1366, 768), (390, 844)):
        viewport(page, width, height)
        page.goto(url + "/")
        expect(page.locator(ROWS)).to_have_count(2)
        # CPU, memory and fullest disk of each host over the last hours, drawn at their size.
        trends = page.locator(f"{row('web-01')} img.trend")
        expect(trends).to_have_count(3)
        expect(page.locator(f"{row('web-02')} img.trend")).to_have_count(3)
        page.wait_for_function("[...document.querySelectorAll('img.trend')].every(i => i.complete)")
        assert page.locator("img.trend").evaluate_all(sizes) == [[64, 64, 18]] * 6, width
        for img in trends.all():
            expect(img).to_be_visible()
        expect(page.locator(f"{row('web-01')} .c-mem img.trend")).to_have_attribute(
            "title", "Memory, last 6 h: peaks 45 to 97 %"
        )
        # The fleet strip: 24 hours; web-01's alert hour has a critical host, and now web-02 is critical.
        bars = page.locator("#fleet-strip li")
        expect(bars).to_have_count(24)
        hour = int(started // 3600 * 3600)
        expect(page.locator(f'#fleet-strip li[data-hour="{hour}"] .strip-critical')).to_have_count(1)
        expect(bars.last).to_have_attribute(
            "title",
            re.compile("^[0-9]{2}:00\N{EN DASH}[0-9]{2}:00: 1 critical, 1 ok"),  # a regex for JS too
        )
        widths = bars.evaluate_all("bs => bs.map(b => b.getBoundingClientRect().width)")
        assert min(widths) > 3, widths
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, tmp_path, f"overview-trends-{width}.png")
        close_up(page.locator(".fleet-strip-panel"), tmp_path, f"fleet-strip-{width}.png")
    watch.check()
