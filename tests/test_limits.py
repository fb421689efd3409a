"""The bounds of osmon.limits, each against the attack that once got past it (issue 19)."""

from __future__ import annotations

import dataclasses
import itertools
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import zmq

from collector.mail import Mail, MailError, SmtpTransport, compose
from collector.samples import POSITION
from collector.store import StoreError, open_store
from osmon import wire
from osmon.limits import MAX_ENTITIES, MAX_FRAMES, MAX_GAPS, MAX_MESSAGE_BYTES
from tests.conftest import BIN, Cluster, Process, wait_for
from tests.test_ingest import Peer, snapshot
from tests.test_mail import SENDER, smtp_config
from tests.test_store import T0, received


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_a_snapshot_with_20000_mounts_is_refused_and_opens_no_alert(cluster: Cluster, context) -> None:
    """Once: 20,000 mounts at 99 % opened 20,000 critical alerts and made the overview 11 MB."""
    collector = cluster.collector()
    bad, good = Peer(context, cluster.port), Peer(context, cluster.port)
    mounts = {f"/m{i}": 99.0 for i in range(20_000)}
    bad.send(snapshot("bad-01", 1, series={"disk.percent": mounts}))
    good.send(snapshot("good-01", 1))
    assert good.wait_acks({1}) == {1}
    assert bad.acks(0.3) == []
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("bad-01") == []
    assert store.alerts_active() == []
    assert f"20000 entries, more than {MAX_ENTITIES}" in collector.output()


def test_the_agent_keeps_the_fullest_mounts_within_the_bound() -> None:
    filesystems = [{"mount": f"/m{i}", "percent": float(i % 100)} for i in range(2000)]
    filesystems.append({"mount": "/" + "x" * 5000, "percent": 100.0})  # no real mount is named so
    raw = wire.encode_snapshot("h", 1, time.time(), 10.0, "x", {"filesystems": filesystems})
    usage = wire.decode_snapshot(raw).series["disk.percent"]  # the collector accepts it
    assert len(usage) == MAX_ENTITIES
    assert min(usage.values()) >= 74.0  # 2000 mounts, 20 per percent: the 512 fullest are >= 74 %


def test_gap_rows_per_host_are_bounded(tmp_path: Path) -> None:
    """Once: seq stepping by 2 made every batch rewrite all the host's gap rows (200k of them)."""
    store = open_store(tmp_path / "osmon.db")
    for start in range(1, 6000, 200):
        store.ingest([received("odd", seq) for seq in range(start, start + 200, 2)])
    store.ingest([received("fine", seq) for seq in (1, 2, 4)])
    store.close()
    hosts = {h.name: h for h in open_store(tmp_path / "osmon.db", readonly=True).hosts()}
    assert len(hosts["odd"].missing) == MAX_GAPS
    assert hosts["odd"].missing[-1] == (5998, 5998)  # the newest are the ones kept
    assert hosts["fine"].missing == [(3, 3)]


def test_one_peer_over_its_byte_budget_cannot_starve_another(cluster: Cluster, context) -> None:
    """Once: 879 KiB snapshots at 7.9 MiB/s delayed a real agent by 11 s (false host-down alerts)."""
    cluster.write_collector_config('peer_rate = "64KiB"\nmax_message_size = "1MiB"')
    collector = cluster.collector()
    flood, good = Peer(context, cluster.port), Peer(context, cluster.port)
    good.send(snapshot("good-01", 1))
    assert good.wait_acks({1}) == {1}
    big = [snapshot("flood-01", seq, padding=b"x" * 900_000) for seq in range(1, 41)]
    for seq, message in enumerate(big, start=1):
        flood.send(message)
        good.send(snapshot("good-01", seq + 1))
    assert good.wait_acks(set(range(2, 42))) == set(range(2, 42))
    acked = flood.acks(1.0)
    assert collector.alive()
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("good-01") == list(range(1, 42))
    stored = store.seqs("flood-01")
    assert 1 <= len(stored) < 40 and set(acked) <= set(stored)  # only what was stored is acked
    assert store.counters()["throttled"] == 40 - len(stored)
    assert "sends more than peer_rate" in collector.output()


def test_a_clock_years_ahead_is_logged_and_stamped_on_receipt(cluster: Cluster, context) -> None:
    """Once: a snapshot stamped 3 years ahead held every alert with a `for` duration for that host."""
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    ahead = time.time() + 3 * 365 * 86400
    peer.send(snapshot("skewed-01", 1, ts=ahead))
    assert peer.wait_acks({1}) == {1}
    before = time.time()
    peer.send(snapshot("skewed-01", 2))
    assert peer.wait_acks({2}) == {2}
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    first, second = store.samples("skewed-01", 0, ahead + 1)
    assert first.seq == 1 and first.ts <= before  # stored as received, not years ahead
    (host,) = store.hosts()
    assert host.latest_ts == second.ts  # the host's latest is the real one, not frozen in the future
    assert "clock" in collector.output() and "ahead" in collector.output()
    assert store.counters()["clock_ahead"] == 1


def test_a_sequence_reset_is_detected_logged_and_stored(cluster: Cluster) -> None:
    """Once: an agent whose spool was deleted restarted at seq 1, and everything it sent was acked and
    dropped as duplicates until its count passed the old maximum: no log line, frozen charts."""
    collector = cluster.collector()
    agent = cluster.agent("web-01")
    wait_for(lambda: len(seqs("web-01", cluster)) >= 5, what="web-01's first snapshots")
    assert agent.terminate() == 0
    cluster.drain("web-01")
    before = len(seqs("web-01", cluster))
    for suffix in ("", "-wal", "-shm"):  # the host is re-imaged: a new spool
        (cluster.dir / f"spool-web-01.db{suffix}").unlink(missing_ok=True)
    agent = cluster.agent("web-01")
    wait_for(lambda: len(seqs("web-01", cluster)) >= before + 3, what="web-01's snapshots after the reset")
    assert agent.terminate() == 0
    assert collector.terminate() == 0
    assert "sequence reset" in collector.output()
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    (host,) = store.hosts()
    assert host.first_seq == 1 and host.last_seq == len(store.seqs("web-01")) - before  # the new numbering
    assert store.samples("web-01", 0, time.time() + 1)[-1].ts == host.latest_ts


def seqs(host: str, cluster: Cluster) -> list[int]:
    try:
        return open_store(cluster.dir / "osmon.db", readonly=True).seqs(host)
    except StoreError:
        return []  # not created yet


def test_a_seq_of_2_63_minus_1_does_not_freeze_the_host(cluster: Cluster, context) -> None:
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    peer.send(snapshot("web-01", 1))
    peer.send(snapshot("web-01", 2**63 - 1, ts=time.time() - 5))
    assert peer.wait_acks({1, 2**63 - 1}) == {1, 2**63 - 1}
    peer.send(snapshot("web-01", 2, metrics={"cpu.percent": 77.0}))
    assert peer.wait_acks({2}) == {2}
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    latest = wire.decode_snapshot(store.latest("web-01"))
    assert latest.seq == 2 and latest.metrics["cpu.percent"] == 77.0


def test_a_full_disk_backs_off_logs_the_real_error_and_keeps_a_host_down(cluster: Cluster, context) -> None:
    """Once: a failing housekeeping pass retried in a busy loop (518k errors in 28 s), an unconditional
    ROLLBACK hid the real error, and a host-down raised while the disk was full was never stored.
    The disk fills for the collector alone: a file-size limit of one byte (EFBIG on every write)."""
    collector = PipedProcess(
        [str(BIN / "osmon-collector"), "run", "--config", str(cluster.collector_config)],
        cluster.dir / "collector.log",
    )
    cluster.processes.append(collector)
    peer = Peer(context, cluster.port)
    peer.send(snapshot("web-01", 1, interval=0.2))
    assert peer.wait_acks({1}) == {1}
    limit = resource.prlimit(collector.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(collector.pid, resource.RLIMIT_FSIZE, (1, limit[1]))
    try:
        # web-01 says nothing more: host.down fires within a second, and cannot be stored.
        wait_for(lambda: "on_tick failed on storage" in collector.output(), what="host.down failing to store")
        wait_for(lambda: "housekeeping failed on storage" in collector.output(), what="housekeeping failing")
    finally:
        resource.prlimit(collector.pid, resource.RLIMIT_FSIZE, limit)
    wait_for(lambda: down_alerts(cluster), what="the host-down raised during the outage, once stored")
    assert collector.terminate() == 0
    assert "no transaction is active" not in collector.output()
    assert "full" in collector.output() or "I/O" in collector.output()  # the real error
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.counters()["hook_errors"] < 50  # a few retries with backoff, not a busy loop


class PipedProcess(Process):
    """A CLI whose output reaches its log through a pipe: a file-size limit on it spares its log."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args, self.log_path = args, log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()

    def terminate(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._copier.join(timeout)
        self.log.close()
        return code


def down_alerts(cluster: Cluster) -> list:
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    return [a for a in store.alerts_active() if a.rule == "host.down"]


MAIL = Mail(["ops@example.org"], "subject", "text", "<p>html</p>")


class TrickleServer:
    """An SMTP server that sends its greeting one byte every 0.3 s: each read succeeds within any timeout."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            for byte in itertools.cycle(b"220-slow\r\n"):
                if self.stop.wait(0.3):
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return  # the client gave up

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def test_an_smtp_server_trickling_bytes_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    """Once: a server sending one byte every 5 s held the sender for 43 s and more with timeout = 10s."""
    server = TrickleServer()
    try:
        config = smtp_config(tmp_path, server.port)
        config = dataclasses.replace(config, smtp_timeout=1.0)  # the per-read timeout is never reached
        outcome: list[object] = []

        def send() -> None:
            try:
                SmtpTransport(config).send(compose(MAIL, SENDER, "<1@x>"), MAIL.recipients)
            except MailError as e:
                outcome.append(e)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        sender.join(20)
        assert not sender.is_alive(), "the sender is still held by the trickling server"
        (error,) = outcome
        assert "did not finish the conversation within 1 s" in str(error)
        assert not error.permanent  # retried later, like any outage
    finally:
        server.close()


def test_a_sequence_reset_within_one_batch_stores_both_snapshots(tmp_path: Path) -> None:
    """Found by tests/test_fuzz.py: the same seq and time twice in a batch (a reset, clocks clamped on
    receipt) made the rows' sort compare None with a number: a TypeError that stopped `run`."""
    store = open_store(tmp_path / "osmon.db")
    first, second = received("web-01", 7, ts=T0), received("web-01", 7, ts=T0)
    values = list(first.sample.values)
    values[POSITION["cpu.percent"]] = None
    first = first._replace(epoch=1, sample=first.sample._replace(values=tuple(values)))
    store.ingest([received("web-01", 6, ts=T0)._replace(epoch=1), first, second._replace(epoch=2)])
    assert store.seqs("web-01") == [6, 7, 7]


def test_a_message_over_the_byte_limit_is_let_go_frame_by_frame(cluster: Cluster, context) -> None:
    """Once: 1,500 frames of 0.57 MiB each, every frame under max_message_size, were all buffered and
    judged only after: the collector grew to 1.1 GB. Now each frame is counted as it is read, and
    past MAX_MESSAGE_BYTES the rest of the message is read and let go, not kept."""
    collector = cluster.collector()
    big, good = Peer(context, cluster.port), Peer(context, cluster.port)
    frames = [snapshot("big-01", seq, padding=b"x" * 900_000) for seq in range(1, 81)]  # ~72 MB in all
    assert sum(map(len, frames)) > MAX_MESSAGE_BYTES
    big.send(*frames)
    del frames
    good.send(snapshot("good-01", 1))
    assert good.wait_acks({1}) == {1}
    big.send(snapshot("big-01", 100))  # the same peer, within the limits: judged on its own
    assert big.wait_acks({100}) == {100}
    assert collector.terminate() == 0
    store = open_store(cluster.dir / "osmon.db", readonly=True)
    assert store.seqs("big-01") == [100]
    assert f"bytes in one message: at most {MAX_FRAMES} and {MAX_MESSAGE_BYTES}" in collector.output()


def test_an_old_agent_restarting_its_sequence_is_at_least_logged(cluster: Cluster, context) -> None:
    """An agent without an epoch (older than this version) cannot be told apart by its numbers, but a
    'duplicate' newer than the host's latest snapshot is no resend: it is said in the log."""
    collector = cluster.collector()
    peer = Peer(context, cluster.port)
    start = time.time() - 100
    for host in ("old-01", "fine-01"):
        for seq in (1, 2, 3):
            peer.send(snapshot(host, seq, ts=start + seq))
    assert peer.wait_acks({1, 2, 3}) == {1, 2, 3}
    peer.send(snapshot("old-01", 1))  # its spool was lost: seq 1 again, stamped now
    peer.send(snapshot("fine-01", 2, ts=start + 2))  # a plain resend, as it was first sent
    assert peer.wait_acks({1, 2}) == {1, 2}
    assert collector.terminate() == 0
    assert "host old-01: seq 1 is already stored but is newer" in collector.output()
    assert "host fine-01: seq" not in collector.output()
