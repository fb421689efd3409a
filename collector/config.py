"""The collector's settings (`collector.toml`)."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from collector import rules, timing
from collector.alertmanager import Alertmanager
from collector.notifyconfig import alertmanagers, webhooks
from collector.store import pg_url
from collector.webhook import Webhook
from osmon import wire
from osmon.configfile import (
    ConfigError,
    Key,
    Problems,
    address_list,
    all_or_none,
    apply_schema,
    at_least,
    boolean,
    email_address,
    http_url,
    integer,
    load_toml,
    loopback,
    one_of,
    parse_duration,
    parse_size,
    port,
    string,
    zmq_endpoint,
)
from osmon.limits import PEER_BYTES_PER_SECOND

DEFAULT_PATH = "/etc/osmonitoring/collector.toml"


class Route(NamedTuple):
    """Alerts of hosts matching `hosts` (a glob) also go to `recipients`."""

    hosts: str
    recipients: list[str]


def routes(value: object) -> list[Route]:
    """The [[alerts.route]] tables."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("expected [[alerts.route]] tables")
    parsed = []
    for i, table in enumerate(value):
        if set(table) != {"hosts", "recipients"}:
            raise ValueError(f"route {i + 1}: needs exactly 'hosts' (a glob) and 'recipients' (a list)")
        parsed.append(Route(string(table["hosts"]), address_list(table["recipients"])))
    return parsed


def database(value: object) -> str:
    """A SQLite file path, or a postgresql:// URL; any other URL is refused (it is not a file name)."""
    text = string(value)
    if not text.strip():
        raise ValueError("is empty")
    if pg_url.is_url(text):
        try:
            return pg_url.check(text)
        except pg_url.DatabaseUrlError as e:
            raise ValueError(str(e)) from None
    return text


KEYS = [
    Key("listen", zmq_endpoint, "tcp://0.0.0.0:5555", "ZeroMQ endpoint the agents connect to"),
    Key(
        "database",
        database,
        "/var/lib/osmonitoring/osmon.db",
        "SQLite database file, or postgresql://USER@HOST:PORT/DATABASE",
    ),
    Key(
        "database_password_file",
        string,
        None,
        "PostgreSQL: file holding the database password (keep it 0400); unset: PGPASSFILE or ~/.pgpass",
    ),
    Key(
        "max_message_size",
        at_least(4096, parse_size),
        1024 * 1024,
        "largest snapshot accepted (ZMQ_MAXMSGSIZE); bigger ones drop the peer's connection",
    ),
    Key("name", string, None, "this collector's name among those sharing the database; default HOST:PORT"),
    Key(
        "lease_time",
        at_least(2, parse_duration),
        10.0,
        "how long a collector keeps a host's detection after its last data; a dead collector's hosts "
        "are taken over after this",
    ),
    Key(
        "agents.interval", at_least(0.05, parse_duration), 10.0, "the agents' shortest interval (timing rule)"
    ),
    Key("agents.ack_timeout", at_least(0.1, parse_duration), 5.0, "the agents' ack_timeout (timing rule)"),
    Key("batch_size", at_least(1, integer), 2000, "snapshots committed per transaction, at most"),
    Key(
        "peer_rate",
        at_least(4096, parse_size),
        PEER_BYTES_PER_SECOND,
        "bytes per second one agent may have stored; more is dropped unacked and resent later",
    ),
    Key("allow_insecure", boolean, False, "listen without CurveZMQ on a non-loopback address"),
    Key("curve.secret_key", string, None, "the collector's secret key file (NAME.key_secret)"),
    Key("curve.agents", string, None, "directory of allowed agent public keys, <host>.key"),
    Key("web.bind", string, "127.0.0.1:5000", "address:port of the dashboard"),
    Key("web.anonymous_read", boolean, False, "allow read-only access without login"),
    Key("web.refresh", at_least(1, parse_duration), 10.0, "how often open pages refresh their data"),
    Key(
        "web.secret_key_file",
        string,
        None,
        "file holding the key that signs session cookies; default: web-secret beside the database, "
        "created (mode 0600) on first start",
    ),
    Key("alerts.down_after", at_least(1, integer), 3, "missed intervals before a host is down"),
    # The 1 h chart reads raw samples; longer ranges read the tiers (collector.store.rollups).
    Key("retention.raw", at_least(3600, parse_duration), 7 * 86400.0, "how long raw samples are kept"),
    Key(
        "retention.minute",
        at_least(86400, parse_duration),
        90 * 86400.0,
        "how long 1-minute rollups are kept",
    ),
    Key(
        "retention.hour",
        at_least(30 * 86400, parse_duration),
        730 * 86400.0,
        "how long 1-hour rollups are kept",
    ),
    Key("web.public_url", http_url, None, "the dashboard's URL as users reach it, for links in mails"),
    Key("smtp.host", string, None, "SMTP server; unset: mail goes through `sendmail` or nowhere"),
    Key("smtp.port", port, None, "default 25, 587 with starttls, 465 with tls"),
    Key("smtp.security", one_of("none", "starttls", "tls"), "starttls", "none | starttls | tls"),
    Key("smtp.username", string, None, "SMTP AUTH user"),
    Key("smtp.password_file", string, None, "file holding the SMTP password (keep it 0400)"),
    Key("smtp.from", email_address, None, "sender address; default osmon@ this machine's FQDN"),
    Key("smtp.timeout", at_least(1, parse_duration), 30.0, "give up on one SMTP conversation after this"),
    Key("sendmail", string, None, "a sendmail-compatible command instead of SMTP, e.g. /usr/bin/msmtp -t"),
    Key("alerts.recipients", address_list, [], "who gets every host's alerts"),
    Key("alerts.repeat", at_least(60, parse_duration), 4 * 3600.0, "reminder interval while an alert fires"),
    Key("alerts.route", routes, [], "[[alerts.route]] hosts = glob, recipients = [...]"),
    Key(
        "notify.webhook",
        webhooks,
        [],
        "[[notify.webhook]] name, url, format = json | slack, secret_file (HMAC signature), hosts = glob",
    ),
    Key("notify.alertmanager", alertmanagers, [], "[[notify.alertmanager]] url = Alertmanager's base URL"),
    Key("certfr.enabled", boolean, True, "follow the CERT-FR security alert feed"),
    Key("certfr.url", http_url, "https://www.cert.ssi.gouv.fr/alerte/feed/", "CERT-FR alert feed (RSS)"),
    Key("certfr.interval", at_least(60, parse_duration), 1800.0, "time between two polls of the feed"),
    Key("certfr.timeout", at_least(1, parse_duration), 20.0, "give up on one fetch after this"),
    Key("certfr.recipients", address_list, [], "mail each new CERT-FR alert to these addresses"),
]


@dataclass(frozen=True)
class CollectorConfig:
    """Checked collector settings."""

    path: str
    listen: str
    database: str
    database_password_file: str | None
    max_message_size: int
    name: str
    lease_time: float
    agent_interval: float
    agent_ack_timeout: float
    batch_size: int
    peer_rate: int
    allow_insecure: bool
    curve_secret_key: str | None
    curve_agents: str | None
    web_bind: str
    web_anonymous_read: bool
    web_users: dict[str, str]  # user -> password hash (`osmon-collector hash-password`)
    web_refresh: float
    web_secret_key_file: str
    down_after: int
    retention_raw: float
    retention_minute: float
    retention_hour: float
    public_url: str | None
    smtp_host: str | None
    smtp_port: int | None
    smtp_security: str
    smtp_username: str | None
    smtp_password_file: str | None
    smtp_from: str
    smtp_timeout: float
    sendmail: str | None
    alert_recipients: list[str]
    alert_repeat: float
    alert_routes: list[Route]
    webhooks: list[Webhook]
    alertmanagers: list[Alertmanager]
    thresholds: rules.Rules
    certfr_enabled: bool
    certfr_url: str
    certfr_interval: float
    certfr_timeout: float
    certfr_recipients: list[str]

    @property
    def curve(self) -> bool:
        return self.curve_secret_key is not None

    @property
    def postgresql(self) -> bool:
        return pg_url.is_postgresql(self.database)

    @property
    def database_shown(self) -> str:
        """The database as logs and messages show it: a URL's password masked."""
        return pg_url.mask(self.database) if self.postgresql else self.database


def load(path: str | Path) -> CollectorConfig:
    """Read and check a collector config, or raise ConfigError (ConfigErrors: all problems of the file)."""
    doc = load_toml(path)
    problems = Problems(path)
    with problems.collect():
        users = _web_users(doc, path)
    s = apply_schema(doc, KEYS, path, free_tables=("thresholds",), problems=problems)
    with problems.collect():
        all_or_none(s, ["curve.secret_key", "curve.agents"], path)
    _check_files(s, problems)
    plain = s["curve.secret_key"] is None and not s["allow_insecure"]
    if plain and not problems.bad("listen") and not loopback(s["listen"]):
        problems.add(
            "listen",
            f"{s['listen']} is not a loopback address and [curve] is not configured: "
            "set up CurveZMQ keys, or set allow_insecure = true to accept unauthenticated agents",
        )
    with problems.collect():
        _check_bind(path, s["web.bind"])
    _check_mail(s, problems)
    # Charts of long ranges read the coarse tiers: one kept shorter than a finer one leaves holes.
    if s["retention.minute"] < s["retention.raw"]:
        problems.add("retention.minute", "must be at least retention.raw")
    if s["retention.hour"] < s["retention.minute"]:
        problems.add("retention.hour", "must be at least retention.minute")
    if not problems.bad("alerts.down_after"):
        for key, why in timing.problems(
            s["alerts.down_after"], s["agents.interval"], s["agents.ack_timeout"], s["lease_time"]
        ):
            problems.add(key, why)
    name = s["name"] or default_name(s["listen"])
    if not wire.valid_host(name.replace(":", "-")):
        problems.add("name", f"{name!r}: use letters, digits, '.', '-', '_' and ':'")
    thresholds = None
    with problems.collect():
        thresholds = rules.parse(s.get("thresholds", {}), path)
    problems.raise_any()
    assert thresholds is not None  # raise_any raised otherwise
    return CollectorConfig(
        path=str(path),
        listen=s["listen"],
        database=s["database"],
        database_password_file=s["database_password_file"],
        max_message_size=s["max_message_size"],
        name=name,
        lease_time=s["lease_time"],
        agent_interval=s["agents.interval"],
        agent_ack_timeout=s["agents.ack_timeout"],
        batch_size=s["batch_size"],
        peer_rate=s["peer_rate"],
        allow_insecure=s["allow_insecure"],
        curve_secret_key=s["curve.secret_key"],
        curve_agents=s["curve.agents"],
        web_bind=s["web.bind"],
        web_anonymous_read=s["web.anonymous_read"],
        web_users=users,
        web_refresh=s["web.refresh"],
        web_secret_key_file=s["web.secret_key_file"] or default_secret_key_file(s["database"]),
        down_after=s["alerts.down_after"],
        retention_raw=s["retention.raw"],
        retention_minute=s["retention.minute"],
        retention_hour=s["retention.hour"],
        public_url=s["web.public_url"],
        smtp_host=s["smtp.host"],
        smtp_port=s["smtp.port"],
        smtp_security=s["smtp.security"],
        smtp_username=s["smtp.username"],
        smtp_password_file=s["smtp.password_file"],
        smtp_from=s["smtp.from"] or f"osmon@{socket.getfqdn()}",
        smtp_timeout=s["smtp.timeout"],
        sendmail=s["sendmail"],
        alert_recipients=s["alerts.recipients"],
        alert_repeat=s["alerts.repeat"],
        alert_routes=s["alerts.route"],
        webhooks=s["notify.webhook"],
        alertmanagers=s["notify.alertmanager"],
        thresholds=thresholds,
        certfr_enabled=s["certfr.enabled"],
        certfr_url=s["certfr.url"],
        certfr_interval=s["certfr.interval"],
        certfr_timeout=s["certfr.timeout"],
        certfr_recipients=s["certfr.recipients"],
    )


def default_name(listen: str) -> str:
    """This machine's short name and the listening port: unique among collectors on distinct machines."""
    port = listen.rpartition(":")[2]
    return f"{socket.gethostname().split('.')[0]}:{port}"


# Where the session key lives when the database is no file on this machine.
PG_SECRET_KEY_FILE = "/var/lib/osmonitoring/web-secret"


def default_secret_key_file(database: str) -> str:
    """`web-secret` beside a SQLite file; for PostgreSQL, in the collector's data directory."""
    if pg_url.is_url(database):
        return PG_SECRET_KEY_FILE
    return str(Path(database).parent / "web-secret")


def _check_files(s: dict, problems: Problems) -> None:
    """The files and directories the config names exist (a typo is found now, not at 3 a.m.)."""
    if s["curve.secret_key"] is not None and not Path(s["curve.secret_key"]).is_file():
        problems.add("curve.secret_key", f"file {s['curve.secret_key']!r} does not exist")
    if s["curve.agents"] is not None and not Path(s["curve.agents"]).is_dir():
        problems.add("curve.agents", f"directory {s['curve.agents']!r} does not exist")
    for hook in s["notify.webhook"]:
        for key, name in (("secret_file", hook.secret_file), ("ca_file", hook.ca_file)):
            if name is not None and not Path(name).is_file():
                problems.add("notify.webhook", f"webhook {hook.name!r}: {key}: file {name!r} does not exist")
    for manager in s["notify.alertmanager"]:
        if manager.ca_file is not None and not Path(manager.ca_file).is_file():
            problems.add("notify.alertmanager", f"ca_file: file {manager.ca_file!r} does not exist")
    password = s["database_password_file"]
    if password is not None:
        if not problems.bad("database") and not pg_url.is_url(s["database"]):
            problems.add("database_password_file", "is only for a postgresql:// database")
        elif not Path(password).is_file():
            problems.add("database_password_file", f"file {password!r} does not exist")


def _check_mail(s: dict, problems: Problems) -> None:
    """One way to send mail, and one that can work."""
    if s["smtp.password_file"] is not None and s["smtp.username"] is None:
        problems.add("smtp.username", "is required when smtp.password_file is set")
    if s["smtp.host"] is not None and s["sendmail"] is not None:
        problems.add("sendmail", "set either [smtp] host or sendmail, not both")
    if s["sendmail"] is not None:
        argv = shlex.split(s["sendmail"]) if s["sendmail"].strip() else []
        if not argv:
            problems.add("sendmail", "is empty")
        elif shutil.which(argv[0]) is None:
            problems.add("sendmail", f"command {argv[0]!r} not found or not executable")


# Domains no mail relay on the internet accepts a sender from.
_LOCAL_DOMAINS = ("localhost", "localdomain", "local", "lan", "internal", "home.arpa", "invalid", "test")


def machine_errors(config: CollectorConfig) -> list[ConfigError]:
    """What only this machine can tell (check-config): `run` would fail on it here."""
    if config.postgresql:
        return []
    directory = Path(config.database).parent
    if not directory.is_dir():
        return [ConfigError(config.path, "database", f"directory {str(directory)!r} does not exist")]
    return []


def warnings(config: CollectorConfig) -> list[str]:
    """What is allowed but probably wrong: said by check-config and at start."""
    found = []
    password = config.database_password_file
    if password is not None and Path(password).is_file() and Path(password).stat().st_mode & 0o077:
        found.append(
            f"{config.path}: key 'database_password_file': {password} is readable by other users (chmod 0400)"
        )
    if config.postgresql and urlsplit(config.database).password is not None:
        found.append(
            f"{config.path}: key 'database': the URL holds a password; prefer database_password_file (0400)"
        )
    for hook in config.webhooks:
        secret = hook.secret_file
        if secret is not None and Path(secret).is_file() and Path(secret).stat().st_mode & 0o077:
            found.append(
                f"{config.path}: key 'notify.webhook': {hook.name}'s secret_file {secret} is readable "
                "by other users (chmod 0400)"
            )
    recipients = config.alert_recipients or config.alert_routes or config.certfr_recipients
    domain = parseaddr(config.smtp_from)[1].rpartition("@")[2].lower()
    if recipients and ("." not in domain or domain.endswith(tuple(f".{d}" for d in _LOCAL_DOMAINS))):
        found.append(
            f"{config.path}: key 'smtp.from': {config.smtp_from!r} is not a routable address; "
            "relays may refuse or spam-file the alerts: set smtp.from"
        )
    return found


def _check_bind(path: str | Path, bind: str) -> None:
    parsed = urlsplit(f"//{bind}")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None:
        raise ConfigError(path, "web.bind", f"expected host:port such as 127.0.0.1:5000, got {bind!r}")


# What werkzeug.security.generate_password_hash writes: method[:params]$salt$hex digest.
_PASSWORD_HASH = re.compile(r"^(scrypt|pbkdf2)(:[a-z0-9]+)*\$[^$]+\$[0-9a-f]+$")


def _web_users(doc: dict, path: str | Path) -> dict[str, str]:
    """Take [web.users] (user = "password hash") out of `doc`: its keys are user names, not settings."""
    web = doc.get("web")
    users = web.pop("users", {}) if isinstance(web, dict) else {}
    if not isinstance(users, dict):
        raise ConfigError(path, "web.users", 'expected a table of user = "password hash"')
    for name, hashed in users.items():
        if not name or not isinstance(hashed, str) or not _PASSWORD_HASH.match(hashed):
            raise ConfigError(
                path,
                f"web.users.{name}",
                "expected a password hash as printed by `osmon-collector hash-password`",
            )
    return users
