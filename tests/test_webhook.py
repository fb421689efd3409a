"""Webhooks through the persistent outbox, against real HTTP servers on loopback: one that takes
deliveries, one that is down, one that hangs, one that answers 500 then 200, one that answers 400;
signatures, formats, host globs, TLS, two senders on one PostgreSQL outbox, and end to end."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import threading
import time
from pathlib import Path

import pytest

from collector import config as collector_config
from collector.config import ConfigError
from collector.notify import Notifier
from collector.outbox import GIVE_UP_AFTER, Outbox, outbox_from_config
from collector.store import AlertEvent, Store, open_store
from collector.webhook import signature
from tests.conftest import Cluster, free_port, wait_for
from tests.test_mail import certificate  # noqa: F401 - a fixture
from tests.webhook_sink import HANG, Sink

T0 = 1_764_000_000.0


def fired(host: str = "web-01", rule: str = "mem.percent") -> AlertEvent:
    return AlertEvent("fired", host, rule, "critical", T0, 96.2, 95.0, started=T0 - 300)


def resolved(host: str = "web-01", rule: str = "mem.percent") -> AlertEvent:
    return AlertEvent("resolved", host, rule, "critical", T0 + 600, 40.0, None, started=T0 - 300)


def hook(name: str, url: str, extra: str = "") -> str:
    return f'[[notify.webhook]]\nname = "{name}"\nurl = "{url}"\ntimeout = 1\n{extra}\n'


class Harness:
    """A collector's notifier and outbox over a store of its own, with a clock the test moves."""

    def __init__(self, tmp_path: Path, text: str, database: str | None = None) -> None:
        path = tmp_path / "collector.toml"
        db = database or str(tmp_path / "osmon.db")
        path.write_text(
            f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{db}"\n'
            f'[web]\npublic_url = "https://osmon.example.org/"\n{text}'
        )
        self.config = collector_config.load(path)
        self.store: Store = open_store(self.config.database)
        self.now = T0
        self.notifier = Notifier(self.config, self.store, clock=lambda: self.now)
        self.outbox = self.sender("local")

    def sender(self, owner: str, store: Store | None = None) -> Outbox:
        outbox = outbox_from_config(store or self.store, self.config)
        outbox.clock, outbox.rng, outbox.owner = (lambda: self.now), (lambda: 0.0), owner
        return outbox

    def events(self, *events: AlertEvent) -> None:
        """Events stored with their deliveries, as detection does."""
        self.store.alerts_apply(list(events), [], mails=self.notifier.mails_for(list(events)))

    def deliver(self, at: float) -> int:
        self.now = at
        return self.outbox.deliver_due(at)

    def channels(self) -> dict[str, list]:
        found: dict[str, list] = {}
        for m in self.store.outbox_recent(1000):
            found.setdefault(m.channel, []).append(m)
        return found


def test_deliveries_are_retried_until_they_land_none_lost_none_twice(
    tmp_path: Path, webhook_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    down_port = free_port()
    urls = {
        "ok": webhook_sink.endpoint(200),
        "down": webhook_sink.endpoint(200, port=down_port),  # nothing listens there yet
        "hang": webhook_sink.endpoint(HANG, 200),
        "flaky": webhook_sink.endpoint(500, 200),
        "bad": webhook_sink.endpoint(400),
    }
    h = Harness(
        tmp_path,
        '[alerts]\nrecipients = ["ops@example.org"]\n' + "".join(hook(n, u) for n, u in urls.items()),
    )
    h.events(fired())
    queued = h.channels()
    assert sorted(queued) == ["mail", *sorted(f"webhook:{n}" for n in urls)]
    caplog.set_level(logging.INFO, "osmon.outbox")
    started = time.monotonic()
    assert h.deliver(T0) == 1  # "ok"; the others refused, timed out, 500, 400
    assert time.monotonic() - started < 10, "a hanging server holds a delivery for its timeout only"
    states = {m.channel: m for m in h.store.outbox_recent(100)}
    assert states["webhook:ok"].sent is not None
    assert states["webhook:bad"].gave_up and "answered 400" in (states["webhook:bad"].last_error or "")
    for name in ("down", "hang", "flaky"):
        m = states[f"webhook:{name}"]
        assert m.sent is None and not m.gave_up and m.next_attempt == T0 + 30 and m.attempts == 1
    assert "gave up on" in caplog.text and "webhook 'bad'" in caplog.text and "400" in caplog.text
    assert "/hook/" not in caplog.text, "a webhook's path (often its secret) stays out of the logs"
    assert all("/hook/" not in (m.last_error or "") for m in states.values())
    assert states["mail"].sent is None and states["mail"].attempts == 0  # no mail transport: kept

    webhook_sink.serve(down_port)  # the server that was down is back
    try:
        assert h.deliver(T0 + 29) == 0  # not due yet: backoff
        assert h.deliver(T0 + 30) == 3
        assert h.deliver(T0 + 10**5) == 0
        # The same change queued again (a retry, a collector taking over): no new delivery.
        h.store.alerts_apply([], [], mails=h.notifier.mails_for([fired()]))
        assert h.deliver(T0 + 10**5 + 1) == 0
    finally:
        webhook_sink.close(down_port)
    bodies = set()
    for name, url in urls.items():
        delivered = webhook_sink.delivered(url)
        assert len(delivered) == (0 if name == "bad" else 1), name
        tries = webhook_sink.got(url)
        assert len({r.body for r in tries}) == 1, "a retry posts the same body"
        assert len({r.headers["X-Osmon-Delivery"] for r in tries}) == 1, "and names the same delivery"
        bodies.add(tries[0].body)
    assert len(webhook_sink.got(urls["flaky"])) == 2 and len(webhook_sink.got(urls["bad"])) == 1
    assert len(bodies) == 1  # every webhook got the same document
    assert "delivery through webhook 'flaky'" in caplog.text and "works again" in caplog.text


def test_the_json_payload_is_documented_and_signed_when_a_secret_is_set(
    tmp_path: Path, webhook_sink: Sink
) -> None:
    secret = tmp_path / "hook-secret"
    secret.write_text("s3cret-shared-with-the-receiver\n")
    secret.chmod(0o400)
    signed, plain = webhook_sink.endpoint(200), webhook_sink.endpoint(200)
    h = Harness(tmp_path, hook("signed", signed, f'secret_file = "{secret}"') + hook("plain", plain))
    h.events(fired(), fired(rule="disk.percent:/var"))
    assert h.deliver(T0) == 2
    [request] = webhook_sink.delivered(signed)
    timestamp = int(request.headers["X-Osmon-Timestamp"])
    assert abs(timestamp - time.time()) < 60  # when it was sent (a receiver refuses old ones)
    expected = (
        "sha256="
        + hmac.new(
            b"s3cret-shared-with-the-receiver", f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
    )
    assert hmac.compare_digest(request.headers["X-Osmon-Signature"], expected)
    assert signature(b"other", timestamp, request.body) != expected
    assert request.headers["Content-Type"] == "application/json"
    doc = request.json()
    assert doc["version"] == 1 and doc["host"] == "web-01"
    assert doc["summary"].startswith("CRITICAL web-01: ") and doc["summary"].endswith("(+1 more)")
    assert doc["dashboard"] == "https://osmon.example.org/host/web-01"
    by_rule = {e["rule"]: e for e in doc["events"]}
    assert by_rule["mem.percent"] == {
        "kind": "fired",
        "rule": "mem.percent",
        "severity": "critical",
        "value": 96.2,
        "threshold": 95.0,
        "started": T0 - 300,
        "ts": T0,
        "summary": "memory 96.2 % >= 95 % for 5 min",
    }
    assert by_rule["disk.percent:/var"]["summary"].startswith("disk /var 96.2 %")
    [unsigned] = webhook_sink.delivered(plain)
    assert unsigned.body == request.body and "X-Osmon-Signature" not in unsigned.headers
    # The resolution goes to the webhooks that heard of the alert.
    h.now = T0 + 600
    h.events(resolved())
    assert h.deliver(T0 + 600) == 2
    last = webhook_sink.delivered(plain)[-1].json()
    assert [e["kind"] for e in last["events"]] == ["resolved"] and last["summary"].startswith(
        "RESOLVED web-01"
    )


def test_slack_format_is_the_incoming_webhook_shape(tmp_path: Path, webhook_sink: Sink) -> None:
    url = webhook_sink.endpoint(200)
    h = Harness(tmp_path, hook("chat", url, 'format = "slack"'))
    h.events(fired())
    assert h.deliver(T0) == 1
    doc = webhook_sink.delivered(url)[0].json()
    assert list(doc) == ["text"]
    first, *rest = doc["text"].splitlines()
    assert first == "*CRITICAL web-01: memory 96.2 % >= 95 % for 5 min*"
    assert rest[0].startswith("FIRED CRITICAL mem.percent: memory 96.2 %")
    assert rest[-1] == "https://osmon.example.org/host/web-01"


def test_a_webhook_gets_only_the_hosts_its_glob_matches_and_silences_hold(
    tmp_path: Path, webhook_sink: Sink
) -> None:
    dba, everyone = webhook_sink.endpoint(200), webhook_sink.endpoint(200)
    h = Harness(tmp_path, hook("dba", dba, 'hosts = "db-*"') + hook("all", everyone))
    h.store.silence("quiet-01", T0 + 3600, "maintenance", T0)
    h.events(fired("web-01"), fired("db-01"), fired("quiet-01"))
    assert h.deliver(T0) == 3
    assert [r.json()["host"] for r in webhook_sink.delivered(dba)] == ["db-01"]
    assert sorted(r.json()["host"] for r in webhook_sink.delivered(everyone)) == ["db-01", "web-01"]


def test_tls_is_verified_by_default_and_a_ca_file_makes_it_trusted(
    tmp_path: Path,
    webhook_sink: Sink,
    certificate: tuple[Path, Path],  # noqa: F811
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    port = webhook_sink.serve(free_port(), tls=context)
    try:
        strict = webhook_sink.endpoint(200, port=port).replace("http:", "https:")
        trusting = webhook_sink.endpoint(200, port=port).replace("http:", "https:")
        h = Harness(
            tmp_path, hook("strict", strict) + hook("trusting", trusting, f'ca_file = "{certificate[0]}"')
        )
        h.events(fired())
        assert h.deliver(T0) == 1
        failed = {m.channel: m for m in h.store.outbox_recent()}["webhook:strict"]
        assert (
            failed.sent is None
            and not failed.gave_up
            and "CERTIFICATE_VERIFY_FAILED" in (failed.last_error or "")
        )
        assert webhook_sink.got(strict) == [] and len(webhook_sink.delivered(trusting)) == 1
    finally:
        webhook_sink.close(port)


def test_deliveries_for_a_webhook_no_collector_has_are_said_once_and_given_up_after_days(
    tmp_path: Path, webhook_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    kept = webhook_sink.endpoint(200)
    before = Harness(tmp_path, hook("old", webhook_sink.endpoint(200)) + hook("kept", kept))
    before.events(fired())  # queued while the webhook "old" was configured ...
    after = Harness(tmp_path, hook("kept", kept))  # ... which the config then lost
    caplog.set_level(logging.INFO, "osmon.outbox")
    assert after.deliver(T0) == 1
    for at in (T0 + 60, T0 + 3600, T0 + 7200):
        after.outbox.upkeep(at)
    said = [r.getMessage() for r in caplog.records if "webhook 'old'" in r.getMessage()]
    assert len(said) == 1 and "not in this collector's config" in said[0] and "5 days" in said[0]
    assert "smtp.host" not in caplog.text, "webhooks only, no recipients: no mail is missing"
    assert after.store.outbox_waiting() == {"webhook:old": 1}  # kept, for a collector that has it
    after.outbox.upkeep(T0 + GIVE_UP_AFTER + 1)
    old = after.channels()["webhook:old"][0]
    assert old.gave_up and old.sent is None and "no sender" in (old.last_error or "")
    assert "gave up on 1 message(s) for webhook 'old'" in caplog.text
    assert after.store.outbox_waiting() == {} and len(webhook_sink.delivered(kept)) == 1


def test_two_collectors_senders_deliver_each_delivery_once(
    tmp_path: Path, webhook_sink: Sink, pg_url: str
) -> None:
    """Several collectors share one PostgreSQL outbox: each delivery is claimed by one sender."""
    url = webhook_sink.endpoint(200)
    h = Harness(tmp_path, hook("chat", url), database=pg_url)
    h.events(*(fired(f"web-{i:02}") for i in range(20)))
    stores = [open_store(pg_url), open_store(pg_url)]
    senders = [h.sender(f"c{i}", store) for i, store in enumerate(stores)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda s=s: counts.append(s.deliver_due(T0))) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for store in stores:
        store.close()
    hosts = [r.json()["host"] for r in webhook_sink.delivered(url)]
    assert sorted(hosts) == [f"web-{i:02}" for i in range(20)] and sum(counts) == 20


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'listen = "tcp://127.0.0.1:5555"\ndatabase = "{tmp_path / "osmon.db"}"\n{text}')
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[notify.webhook]]\nname = "a"\n', "needs 'url'"),
        ('[[notify.webhook]]\nname = "a"\nurl = "ftp://x/y"\n', "expected an http:// or https:// URL"),
        ('[[notify.webhook]]\nurl = "https://x/y"\n', "name: expected letters"),
        (
            '[[notify.webhook]]\nname = "a"\nurl = "https://x/"\nformat = "teams"\n',
            "format: expected one of json, slack",
        ),
        ('[[notify.webhook]]\nname = "a"\nurl = "https://x/"\nsecret = "x"\n', "unknown key 'secret'"),
        (
            '[[notify.webhook]]\nname = "a"\nurl = "https://x/"\n[[notify.webhook]]\nname = "a"\nurl = "https://y/"\n',
            "two webhooks",
        ),
        (
            '[[notify.webhook]]\nname = "a"\nurl = "https://x/"\nsecret_file = "/nonexistent"\n',
            "does not exist",
        ),
        (
            '[[notify.webhook]]\nname = "a"\nurl = "https://x/"\ntimeout = "0s"\n',
            "timeout: must be at least 1",
        ),
        ("[[notify.alertmanager]]\n", "needs 'url'"),
        ('[[notify.alertmanager]]\nurl = "am:9093"\n', "expected an http:// or https:// URL"),
    ],
)
def test_bad_notify_tables_are_clear_errors(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        collector_config.load(write(tmp_path, text))
    assert says in str(raised.value) and "notify." in str(raised.value)


def test_a_url_with_credentials_is_masked_in_errors_and_logs(tmp_path: Path) -> None:
    secret_url = "gopher://user:hunter2@chat.example.org/services/T0/B0/XXXX"
    with pytest.raises(ConfigError) as raised:
        collector_config.load(write(tmp_path, f'[[notify.webhook]]\nname = "a"\nurl = "{secret_url}"\n'))
    assert "hunter2" not in str(raised.value) and "XXXX" not in str(raised.value)
    config = collector_config.load(
        write(
            tmp_path,
            '[[notify.webhook]]\nname = "chat"\nurl = "https://user:hunter2@chat.example.org:8443/s/X"\n',
        )
    )
    [parsed] = config.webhooks
    assert str(parsed) == "webhook 'chat' (https://chat.example.org:8443/…)"
    assert (parsed.format, parsed.hosts, parsed.secret_file, parsed.timeout) == ("json", "*", None, 10.0)


def test_a_secret_file_readable_by_others_is_warned_of(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0o644)
    config = collector_config.load(
        write(tmp_path, f'[[notify.webhook]]\nname = "a"\nurl = "https://x/"\nsecret_file = "{secret}"\n')
    )
    assert any("readable by other users" in w for w in collector_config.warnings(config))


def test_end_to_end_breach_down_and_back_reach_the_webhook_once_each(
    cluster: Cluster, webhook_sink: Sink
) -> None:
    url = webhook_sink.endpoint(200)
    cluster.write_collector_config(
        f'[[notify.webhook]]\nname = "ops"\nurl = "{url}"\n'
        '[thresholds."mem.percent"]\nwarning = 0.01\ncritical = 100\nfor = 0\n'
    )
    collector = cluster.collector()
    agent = cluster.agent("web-01", interval=0.2)

    def kinds() -> list[tuple[str, str]]:
        return [(e["rule"], e["kind"]) for r in webhook_sink.delivered(url) for e in r.json()["events"]]

    wait_for(lambda: ("mem.percent", "fired") in kinds(), what="the breach delivery")
    agent.terminate()
    wait_for(lambda: ("host.down", "fired") in kinds(), what="the host-down delivery")
    agent = cluster.agent("web-01", interval=0.2)
    wait_for(lambda: ("host.down", "resolved") in kinds(), what="the resolution")
    agent.terminate()
    assert collector.terminate() == 0
    assert sorted(set(kinds())) == sorted(kinds()), "each change delivered once"
    assert json.loads(webhook_sink.delivered(url)[0].body)["host"] == "web-01"
