"""A hostile or careless host cannot stop the collector (one test per attack that once worked)."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import signal
import socket
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from collector.certfr import CertfrPoller
from collector.notify import certfr_mail
from collector.store import open_store
from osmon import wire
from tests.conftest import BIN, Cluster, wait_for
from tests.test_backup import filled_database, osmon, rewrite, tree, write_config
from tests.test_certfr import ALERTE, FeedServer, Mailbox, make_config, with_new_item
from tests.test_curve import CurveCluster
from tests.test_ingest import Peer, snapshot

# Finite but huge floats: each once crashed `run` with an OverflowError in the scaling of
# compact storage, in SQLite or in msgpack, and a resend kept ingest down.
HUGE = [
    {"metrics": {"net.rx_bps": 1e19}},
    {"metrics": {"cpu.percent": 1e17}},
    {"metrics": {"disk.read_bps": 1.7e308}},
    {"metrics": {"load.1": 1e300}},
    {"series": {"disk.percent": {"/": 1.7e308}}},
    {"series": {"cpu.core": [1e19]}},
    {"series": {"net.io": {"eth0": [1e300, 0.0]}}},
    {"series": {"disk.io": {"vda": [0.0, 1e19]}}},
]


@pytest.mark.parametrize("changes", HUGE, ids=lambda c: str(c)[:40])
def test_a_huge_finite_number_is_refused_not_fatal(cluster: Cluster, context: zmq.Context, changes) -> None:
    collector = cluster.collector()
    bad, good = Peer(context, cluster.port), Peer(context, cluster.port)
    good.send(snapshot("good-01", 1))
    assert good.wait_acks({1}) == {1}
    for _ in range(3):  # an agent resends what is not acked
        bad.send(snapshot("bad-01", 1, **changes))
    good.send(snapshot("good-01", 2))
    assert good.wait_acks({2}) == {2}
    assert bad.acks(0.3) == []
    assert collector.alive(), collector.output()
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("good-01") == [1, 2]
    assert store.seqs("bad-01") == []
    assert "outside" in collector.output()  # the log says what was wrong


def test_the_agent_leaves_out_a_value_beyond_its_unit_range() -> None:
    probes = {"cpu": {"percent": 250.0, "per_core": [50.0, 1e19]}, "net_io": {"rx_bps": 1e300, "tx_bps": 5.0}}
    snap = wire.decode_snapshot(wire.encode_snapshot("h", 1, time.time(), 10.0, "x", probes))
    assert "cpu.percent" not in snap.metrics and "net.rx_bps" not in snap.metrics
    assert snap.metrics["net.tx_bps"] == 5.0
    assert snap.series["cpu.core"] == [50.0, None]


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def curve(cluster: Cluster) -> CurveCluster:
    return CurveCluster(cluster)


def test_a_descriptor_flood_never_empties_the_allow_list(curve: CurveCluster) -> None:
    """Idle TCP connections up to the descriptor limit, then a reload: agents stay allowed."""
    web_key = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    wait_for(lambda: "listening on" in collector.output(), what="the collector to listen")
    agent = curve.agent("web-01", web_key)
    wait_for(lambda: len(curve.stored("web-01")) >= 3, what="web-01 over CURVE")
    # A limit the flood can reach in a test (the collector already raised its soft limit to the hard one).
    soft, hard = resource.prlimit(collector.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(collector.pid, resource.RLIMIT_NOFILE, (64, hard))
    flood = []
    try:
        for _ in range(100):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", curve.c.port))
            except OSError:
                s.close()
                break
            flood.append(s)
        # A key added during the flood, and a reload: the directory cannot be read now.
        db_key = curve.agent_keys("db-01", allow_as="db-01")
        collector.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "allow-list in force (1 keys) is kept" in collector.output(), what="the kept list")
    finally:
        for s in flood:
            s.close()
    resource.prlimit(collector.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert "0 agent keys" not in collector.output()
    # web-01 was never cut off, and db-01's key is read once the directory can be read again.
    before = len(curve.stored("web-01"))
    wait_for(lambda: len(curve.stored("web-01")) > before + 3, what="web-01 after the flood")
    other = curve.agent("db-01", db_key)
    wait_for(lambda: len(curve.stored("db-01")) >= 3, timeout=30, what="db-01, allowed after the flood")
    for process in (agent, other):
        process.terminate()
    assert collector.terminate() == 0
    assert collector.alive() is False


FORGED = "\n2026-01-01 00:00:00,000 ERROR osmon.collector: FORGED line"


def test_control_characters_are_escaped_in_logs_and_in_the_terminal(cluster: Cluster, context) -> None:
    """Once: a mount name with a newline forged a log line; `alerts` printed ESC sequences raw."""
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    mount = "/mnt" + FORGED + "\x1b[2J\x1b]0;owned\x07"
    peer.send(snapshot("web-01", 1, series={"disk.percent": {mount: 99.0}}))
    assert peer.wait_acks({1}) == {1}
    wait_for(lambda: "fired critical disk.percent" in collector.output(), what="the disk alert")
    shown = subprocess.run(
        [str(BIN / "osmon-collector"), "alerts", "--config", str(cluster.collector_config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert collector.terminate() == 0
    for output in (collector.output(), shown):
        assert "\x1b" not in output and "\x07" not in output
        assert not any(line.startswith("2026-01-01") for line in output.splitlines())
        assert "/mnt\\n2026-01-01" in output  # shown, escaped, on the alert's own line


def test_new_unknown_keys_do_not_write_a_line_each(curve: CurveCluster, context) -> None:
    """Once: every new unknown CurveZMQ key logged a line, so a peer making up keys filled the log."""
    collector = curve.c.collector()
    wait_for(lambda: "listening on" in collector.output(), what="the collector to listen")
    server_key, _ = zmq.auth.load_certificate(curve.server_public)
    for _ in range(20):
        public, secret = zmq.curve_keypair()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_key
        sock.connect(f"tcp://127.0.0.1:{curve.c.port}")
        sock.send(b"x")
        wait_for(lambda n=_: collector.output().count("refused a CurveZMQ") >= 1, what="a refusal")
        time.sleep(0.05)  # let the handshake be refused before the next key
        sock.close()
    assert collector.terminate() == 0
    assert collector.output().count("refused a CurveZMQ client") == 1


def test_the_clis_create_files_no_other_user_can_read(cluster: Cluster) -> None:
    """Once: run by hand (umask 022), database, WAL and spool were 0644: command lines, users, mail."""
    old = os.umask(0o022)
    try:
        collector = cluster.collector()
        agent = cluster.agent("web-01")
        wait_for(lambda: (cluster.dir / "osmon.db-wal").exists(), what="the database")
        wait_for(lambda: cluster.produced("web-01")[0] >= 2, what="the spool")
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in cluster.dir.iterdir()
            if path.name.startswith(("osmon.db", "spool-"))
        }
        agent.terminate()
        collector.terminate()
    finally:
        os.umask(old)
    assert {"osmon.db", "osmon.db-wal", "spool-web-01.db"} <= set(modes)
    for name, mode in modes.items():
        assert mode & 0o007 == 0, f"{name} is {mode:o}"
        if name.startswith("spool-"):
            assert mode & 0o077 == 0, f"{name} is {mode:o}"


@pytest.fixture
def server():
    s = FeedServer()
    yield s
    s.close()


def test_a_javascript_link_in_the_feed_never_becomes_an_href_in_the_mail(tmp_path, server) -> None:
    """Once: the dashboard dropped an item's javascript: link, but the mail's HTML kept it as an href."""
    store = open_store(tmp_path / "osmon.db")
    mailbox = Mailbox()
    poller = CertfrPoller(make_config(tmp_path, server.url, ["secu@example.org"]), store, notify=mailbox)
    poller.poll_once()
    server.body = with_new_item().replace(
        f"<link>{ALERTE}CERTFR-2026-ALE-009/</link>".encode(),
        b"<link>JavaScript:alert(document.cookie)</link>",
    )
    poller.poll_once()
    (items,) = mailbox.batches
    mail = certfr_mail(items, ["secu@example.org"])
    assert "javascript:" not in mail.html.lower()
    assert "OpenSSL (20 août 2026)" in mail.html  # the title stays, as text
    assert f'href="{ALERTE}' in certfr_mail(store.certfr_items(limit=2)[1:], ["x@example.org"]).html


def bomb(source: Path, out: Path) -> Path:
    """The archive with a database of 64 MiB of zeros (about 64 KiB compressed), its checksum right."""
    zeros = b"\0" * (64 << 20)

    def edit(manifest: dict, rest: list) -> None:
        for entry in manifest["members"]:
            if entry["name"] == "osmon.db":
                entry["size"], entry["sha256"] = len(zeros), hashlib.sha256(zeros).hexdigest()
        for i, (info, _) in enumerate(rest):
            if info.name == "osmon.db":
                info.size = len(zeros)
                rest[i] = (info, zeros)

    return rewrite(source, out, edit)


def string_mode(source: Path, out: Path) -> Path:
    def edit(manifest: dict, rest: list) -> None:
        for entry in manifest["members"]:
            entry["mode"] = "0644"

    return rewrite(source, out, edit)


def nested_manifest(source: Path, out: Path) -> Path:
    data = b"[" * 100_000 + b"]" * 100_000
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    """A good backup of a small database (config in tmp_path/collector.toml, database under data/)."""
    config = write_config(tmp_path)
    filled_database(config, {"web-01": 20})
    out = tmp_path / "good.tar.gz"
    result = osmon("backup", "--config", config, "--output", out)
    assert result.returncode == 0, result.stderr
    return out


def small_files_only() -> None:
    """In the restore process: no file may grow past 8 MiB (EFBIG beyond), to see what it writes."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, resource.RLIM_INFINITY))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (nested_manifest, "nested too deeply"),
        (string_mode, "mode '0644' is not a file mode"),
        (bomb, "osmon.db is not a SQLite database"),
    ],
    ids=["nested manifest", "mode as a string", "gzip bomb"],
)
def test_a_crafted_archive_is_refused_before_anything_is_written(tmp_path: Path, backup: Path, make, message):
    """Once: a deeply nested manifest (RecursionError) and a string mode with --files-to (TypeError) ended
    in tracebacks; a 202 KiB gzip bomb wrote 200 MiB beside the database before its check."""
    bad = make(backup, tmp_path / "bad.tar.gz")
    state = tree(tmp_path)
    result = subprocess.run(
        [
            *(str(BIN / "osmon-collector"), "restore", "--config", str(tmp_path / "collector.toml")),
            *("--input", str(bad), "--files-to", str(tmp_path / "review")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files_only,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith("osmon-collector: ") and message in line, line
    assert tree(tmp_path) == state


def test_reconnecting_agents_do_not_grow_the_collectors_memory(curve: CurveCluster, context) -> None:
    """Once: each authenticated connect/disconnect cycle kept 3-5 KB in the collector, never returned
    (54 to 124 MB over 2,000 cycles). An agent sends a snapshot on each of thousands of connections."""
    secret = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    wait_for(lambda: "listening on" in collector.output(), what="the collector to listen")
    seq = 0

    def cycles(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            seq += 1
            sock = curve.raw_peer(context, secret)
            sock.send(wire.encode_snapshot("web-01", seq, time.time(), 10.0, "t", {"cpu": {"percent": 1.0}}))
            assert sock.poll(10_000), "no ack"
            sock.recv()
            sock.close()

    cycles(1000)  # the allocator's and caches' steady state
    before = rss_kib(collector.pid)
    cycles(4000)
    grown = rss_kib(collector.pid) - before
    assert collector.terminate() == 0
    assert grown < 4096, f"{grown} KiB more after 4,000 reconnections"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
