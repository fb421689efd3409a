"""CurveZMQ: encryption, the allow-list of agent keys, and host names bound to keys."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.store import StoreError, open_store
from osmon import wire
from tests.conftest import BIN, Cluster, wait_for


def keygen(directory: Path, name: str) -> tuple[Path, Path]:
    subprocess.run(
        [str(BIN / "osmon-collector"), "keygen", str(directory), "--name", name],
        check=True,
        capture_output=True,
    )
    return directory / f"{name}.key", directory / f"{name}.key_secret"


class CurveCluster:
    """A collector with CurveZMQ and an allow-list, plus keys for agents."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster
        self.keys = cluster.dir / "keys"
        self.agents_dir = self.keys / "agents"
        self.agents_dir.mkdir(parents=True)
        self.server_public, self.server_secret = keygen(self.keys, "collector")
        cluster.write_collector_config(
            f'[curve]\nsecret_key = "{self.server_secret}"\nagents = "{self.agents_dir}"\n'
        )

    def agent_keys(self, name: str, allow_as: str | None = None) -> Path:
        """A key pair for `name`; its public key allowed for host `allow_as` (None: not allowed)."""
        public, secret = keygen(self.keys / "own", name)
        if allow_as:
            (self.agents_dir / f"{allow_as}.key").write_bytes(public.read_bytes())
        return secret

    def agent(self, host: str, secret: Path, server_key: Path | None = None):
        server_key = server_key or self.server_public
        return self.c.agent(
            host, interval=0.1, extra=f'[curve]\nsecret_key = "{secret}"\nserver_key = "{server_key}"\n'
        )

    def raw_peer(self, context: zmq.Context, secret: Path) -> zmq.Socket:
        public, private = zmq.auth.load_certificate(secret)
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_publickey, sock.curve_secretkey = public, private
        sock.curve_serverkey, _ = zmq.auth.load_certificate(self.server_public)
        sock.connect(f"tcp://127.0.0.1:{self.c.port}")
        return sock

    def stored(self, host: str) -> list[int]:
        try:
            return open_store(self.c.dir / "osmon.db", readonly=True).seqs(host)
        except StoreError:  # the collector has not created it yet
            return []


@pytest.fixture
def curve(cluster: Cluster) -> CurveCluster:
    return CurveCluster(cluster)


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def snapshot(host: str, seq: int) -> bytes:
    return wire.encode_snapshot(host, seq, time.time(), 10.0, "test", {"cpu": {"percent": 1.0}})


def test_keygen_writes_a_pyzmq_certificate_pair_with_a_private_secret(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path, "web-01")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub, sec = zmq.auth.load_certificate(secret)
    assert zmq.auth.load_certificate(public) == (pub, None)
    assert len(pub) == 40 and len(sec) == 40
    again = subprocess.run(
        [str(BIN / "osmon-agent"), "keygen", str(tmp_path), "--name", "web-01"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "already exists" in again.stderr  # never overwrite a key


def test_an_allow_listed_agent_delivers_everything(curve: CurveCluster) -> None:
    secret = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    agent = curve.agent("web-01", secret)
    wait_for(lambda: len(curve.stored("web-01")) >= 5, what="snapshots over CURVE")
    agent.terminate()
    curve.c.drain("web-01")
    assert collector.terminate() == 0
    last_seq, _ = curve.c.produced("web-01")
    assert curve.stored("web-01") == list(range(1, last_seq + 1))


def test_an_unknown_key_never_gets_in(curve: CurveCluster) -> None:
    allowed_key, stranger_key = curve.agent_keys("web-01", allow_as="web-01"), curve.agent_keys("web-02")
    collector = curve.c.collector()
    allowed = curve.agent("web-01", allowed_key)
    stranger = curve.agent("web-02", stranger_key)
    wait_for(lambda: len(curve.stored("web-01")) >= 5, what="the allowed agent")
    time.sleep(1)
    assert curve.stored("web-02") == []
    assert curve.c.produced("web-02")[1] > 0  # the stranger keeps its snapshots spooled
    stranger.terminate()
    allowed.terminate()
    collector.terminate()
    assert "refused a CurveZMQ client with an unknown key" in collector.output()
    assert "handshake" in stranger.output() and "allow-list" in stranger.output()


def test_a_valid_key_cannot_write_another_hosts_data(curve: CurveCluster, context: zmq.Context) -> None:
    secret = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    peer = curve.raw_peer(context, secret)
    peer.send_multipart([snapshot("db-01", 1), snapshot("web-01", 1)])
    wait_for(lambda: curve.stored("web-01") == [1], what="web-01's own snapshot")
    collector.terminate()
    store = open_store(curve.c.dir / "osmon.db", readonly=True)
    assert [h.name for h in store.hosts()] == ["web-01"]
    assert store.counters()["unauthorized"] == 1
    assert "the key of web-01 cannot send snapshots for host db-01" in collector.output()


@pytest.mark.parametrize("reload", ["sighup", "watch"])
def test_a_removed_key_is_kept_out_after_reload(curve: CurveCluster, reload: str) -> None:
    secret = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    agent = curve.agent("web-01", secret)
    wait_for(lambda: len(curve.stored("web-01")) >= 3, what="snapshots before removal")
    (curve.agents_dir / "web-01.key").unlink()
    if reload == "sighup":
        os.kill(collector.pid, signal.SIGHUP)
    # The open connection is re-checked on every snapshot: nothing more gets stored.
    wait_for(
        lambda: "was removed from the allow-list" in collector.output(),
        timeout=15,
        what="the removal to take effect",
    )
    frozen = curve.stored("web-01")
    time.sleep(1.5)
    assert curve.stored("web-01") == frozen
    assert curve.c.produced("web-01")[1] > 0  # the agent keeps them: nothing is lost
    agent.terminate()
    collector.terminate()


def test_adding_a_key_takes_effect_without_a_restart(curve: CurveCluster) -> None:
    collector = curve.c.collector()
    secret = curve.agent_keys("web-03", allow_as=None)
    agent = curve.agent("web-03", secret)
    time.sleep(1)
    assert curve.stored("web-03") == []
    (curve.agents_dir / "web-03.key").write_bytes((curve.keys / "own" / "web-03.key").read_bytes())
    # Within a housekeeping pass (5 s) and the agent's reconnect: everything spooled arrives.
    wait_for(lambda: len(curve.stored("web-03")) >= 15, timeout=20, what="the spooled snapshots")
    agent.terminate()
    collector.terminate()
    assert curve.stored("web-03")[0] == 1


def test_a_wrong_server_key_means_no_connection_a_clear_log_and_a_growing_spool(curve: CurveCluster) -> None:
    impostor_public, _ = keygen(curve.keys / "other", "collector")
    secret = curve.agent_keys("web-01", allow_as="web-01")
    collector = curve.c.collector()
    agent = curve.agent("web-01", secret, server_key=impostor_public)
    wait_for(lambda: curve.c.produced("web-01")[1] >= 10, what="snapshots to pile up in the spool")
    wait_for(lambda: "handshake" in agent.output(), what="the agent's log line")
    assert "check that curve.server_key is the collector's public key" in agent.output()
    assert curve.stored("web-01") == []
    agent.terminate()
    collector.terminate()


garbage_frames = st.one_of(
    st.binary(max_size=2048),
    st.builds(
        lambda d: msgpack.packb(d, use_bin_type=True),
        st.dictionaries(
            st.sampled_from(["v", "host", "seq", "ts", "probes", "metrics", "series"]),
            st.one_of(
                st.integers(-(2**63), 2**63 - 1),
                st.floats(),
                st.text(max_size=30),
                st.binary(max_size=30),
                st.none(),
            ),
            max_size=7,
        ),
    ),
)


def test_an_authenticated_peer_sending_garbage_costs_other_agents_nothing(
    curve: CurveCluster, context: zmq.Context
) -> None:
    curve.c.write_collector_config(
        f'max_message_size = "1MiB"\n[curve]\nsecret_key = "{curve.server_secret}"\nagents = "{curve.agents_dir}"\n'
    )
    good_key, evil_key = (
        curve.agent_keys("web-01", allow_as="web-01"),
        curve.agent_keys("evil-01", allow_as="evil-01"),
    )
    collector = curve.c.collector()
    good = curve.agent("web-01", good_key)
    attacker = curve.raw_peer(context, evil_key)
    wait_for(lambda: len(curve.stored("web-01")) >= 3, what="the good agent")

    sent = [0]

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(garbage_frames)
    def send_garbage(frame: bytes) -> None:
        attacker.send(frame)
        sent[0] += 1

    send_garbage()
    attacker.send(b"\x00" * (8 * 1024 * 1024))  # 8 MiB: over the cap, the attacker is cut off
    assert sent[0] >= 1000
    time.sleep(1)
    assert collector.alive()
    good.terminate()
    curve.c.drain("web-01")
    collector.terminate()
    last_seq, pending = curve.c.produced("web-01")
    assert pending == 0
    assert curve.stored("web-01") == list(range(1, last_seq + 1))
    assert curve.stored("evil-01") == []
