"""`osmon-collector`: the collector's commands. The one place where errors become exit codes."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import zmq

from collector import allowlist, lock, peers, tokens
from collector import backup as backups
from collector import config as collector_config
from collector import restore as restores
from collector import status as host_status
from collector import testmail as test_message
from collector.gctune import tune_garbage_collector
from collector.ingest import Ingest, bind_socket
from collector.mail import MailError
from collector.service import Services
from collector.store import Store, StoreError, StoreUnreachable, check_connection, open_store
from collector.timefmt import iso
from collector.units import binary
from osmon import __version__, keys, wire
from osmon.arguments import Parser, guarded
from osmon.configfile import ConfigError, ConfigErrors, parse_duration
from osmon.filemode import narrow_umask
from osmon.printable import escape_logs, printable
from osmon.shutdown import Shutdown
from osmon.words import plural

log = logging.getLogger("osmon.collector")
T = TypeVar("T")

# Shown by --help (the module docstring is for developers).
DESCRIPTION = (
    "osMonitoring collector: receives the agents' snapshots, stores them, detects problems, "
    "mails alerts and serves the dashboard."
)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="osmon-collector", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"osmon-collector {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"collector config (default {collector_config.DEFAULT_PATH})"

    run = commands.add_parser("run", help="receive, store and acknowledge agent snapshots")
    run.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    status = commands.add_parser("status", help="per host: status, last seen, stored sequence")
    status.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    status.add_argument("--json", action="store_true", help="print a JSON list")

    cluster = commands.add_parser(
        "cluster", help="the collectors sharing the database: heartbeat, hosts owned, receiving rate"
    )
    cluster.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    cluster.add_argument("--json", action="store_true", help="print a JSON list")

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    check.add_argument("--connect", action="store_true", help="also check that the database answers")

    migrate = commands.add_parser(
        "migrate-store", help="copy a SQLite database into an empty PostgreSQL database, and verify it"
    )
    migrate.add_argument("--from", dest="source", required=True, help="the SQLite database file")
    migrate.add_argument("--to", dest="target", required=True, help="postgresql://USER@HOST:PORT/DATABASE")
    migrate.add_argument("--password-file", help="file holding the target database's password")

    alerts = commands.add_parser("alerts", help="list active alerts")
    alerts.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    alerts.add_argument("--json", action="store_true", help="print a JSON list")

    silence = commands.add_parser("silence", help="stop mailing a host's alerts for a while (still recorded)")
    silence.add_argument("host")
    silence.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h, 1d")
    silence.add_argument("--reason", required=True)
    silence.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)

    unsilence = commands.add_parser("unsilence", help="lift a host's silence")
    unsilence.add_argument("host")
    unsilence.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)

    web = commands.add_parser("web", help="serve the dashboard (Flask under waitress)")
    web.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    web.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    commands.add_parser(
        "hash-password",
        help="print a password hash for [web.users] (prompts, or reads one line from standard input)",
    )

    backup = commands.add_parser(
        "backup", help="write a consistent online copy of the database, config and public keys (tar.gz)"
    )
    backup.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    where = backup.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="the archive to write, X.tar.gz")
    where.add_argument(
        "--output-dir", type=Path, help="write DIR/osmon-backup-<UTC time>.tar.gz (see --keep)"
    )
    backup.add_argument(
        "--keep", type=int, help="with --output-dir: delete the oldest osmon-backup-*.tar.gz beyond N"
    )
    backup.add_argument(
        "--include-secrets",
        action="store_true",
        help="also archive the collector's secret key, the web session key and the SMTP password file",
    )

    restore = commands.add_parser(
        "restore",
        help="replace the database with a backup's, after verifying it "
        "(SQLite: the old one is kept aside; PostgreSQL: into an empty database)",
    )
    restore.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    restore.add_argument("--input", type=Path, required=True, help="an archive from `backup`")
    restore.add_argument(
        "--files-to",
        type=Path,
        help="also write the archive's config and keys under this new directory, for review "
        "(they are never installed over the current ones)",
    )

    keygen = commands.add_parser("keygen", help="write a CurveZMQ key pair NAME.key / NAME.key_secret")
    keygen.add_argument("directory")
    keygen.add_argument("--name", required=True)

    test_mail = commands.add_parser(
        "test-mail", help="send a test message through the configured SMTP server or sendmail command"
    )
    test_mail.add_argument("--to", required=True, help="the address to send it to")
    test_mail.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)

    token = commands.add_parser("token", help="read-only bearer tokens for Prometheus and scripts")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    token_new = token_commands.add_parser("new", help="create a token NAME and print it (once)")
    token_new.add_argument("name")
    token_new.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    token_set = token_commands.add_parser(
        "set", help="store the token NAME read from a file (from a vault: idempotent, for Ansible)"
    )
    token_set.add_argument("name")
    token_set.add_argument(
        "--from-file", required=True, metavar="FILE", help="the token, on its own line; - for standard input"
    )
    token_set.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    token_list = token_commands.add_parser("list", help="list the tokens' names and creation dates")
    token_list.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    token_revoke = token_commands.add_parser("revoke", help="revoke the token NAME at once")
    token_revoke.add_argument("name")
    token_revoke.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    escape_logs()
    narrow_umask(0o027)  # database, WAL, keys and backups: owner and group (the web) only
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The error boundary: every expected failure becomes one line per problem and exit status 2."""
    expected: dict[type[Exception], str] = {
        **dict.fromkeys(
            (ConfigError, StoreError, keys.KeyFileError, UsageError, lock.LockError, backups.BackupError), ""
        ),
        MailError: "test mail not sent: ",
        zmq.ZMQError: "ZeroMQ: ",
    }
    return guarded("osmon-collector", lambda: COMMANDS[args.command](args), expected)


def store_of(config: collector_config.CollectorConfig, readonly: bool = True, role: str = "cli") -> Store:
    """The config's store (`readonly`: never migrates; `role` names PostgreSQL sessions)."""
    return open_store(
        config.database,
        readonly=readonly,
        password_file=config.database_password_file,
        application_name=f"osmon-collector {role}",
    )


RETRY_MAX = 60.0  # seconds between two attempts to reach the database at start, at most


def until_reachable(open_: Callable[[], T], what: str) -> T:
    """open_(), tried again with backoff while the database server cannot be reached (logged once)."""
    delay = 1.0
    told = False
    while True:
        try:
            result = open_()
        except StoreUnreachable as e:
            if not told:
                log.error("%s; trying again until it answers", e)
                told = True
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        if told:
            log.info("%s: the database answers", what)
        return result


def cmd_run(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    hold = functools.partial(lock.hold_run, config.database, config.database_password_file, config.name)
    with until_reachable(hold, "run") if config.postgresql else hold():
        return _run(config)


def _run(config: collector_config.CollectorConfig) -> int:
    # The collector's name in its sessions: a DBA sees which collector a connection is.
    store = until_reachable(lambda: store_of(config, readonly=False, role=f"run {config.name}"), "run")
    context = zmq.Context()
    shutdown = Shutdown(reload=True)
    authenticator = access = None
    try:
        if config.curve:
            # The ZAP handler must run before the socket binds, or CURVE clients go unchecked.
            authenticator, access = allowlist.start(context, str(config.curve_agents))
        else:
            log.warning(
                "CurveZMQ is not configured: agent traffic on %s is neither encrypted nor authenticated%s",
                config.listen,
                " (allow_insecure = true)" if config.allow_insecure else "",
            )
        try:
            socket = bind_socket(context, config)
        except zmq.ZMQError as e:
            raise ConfigError(
                config.path,
                "listen",
                f"cannot listen on {config.listen}: {zmq.strerror(e.errno or 0) if e.errno else e}",
            ) from None
        log.info(
            "collector %s listening on %s, storing in %s", config.name, config.listen, config.database_shown
        )
        services = Services(config, store)
        services.start()
        tune_garbage_collector()
        try:
            Ingest(
                config,
                store,
                socket,
                access=access,
                on_batch=services.on_batch,
                on_tick=services.on_tick,
                on_housekeeping=services.on_housekeeping,
                upkeep=services.upkeep,
            ).run(shutdown)
        finally:
            services.stop()
    finally:
        if authenticator is not None:
            authenticator.stop()
        shutdown.close()
        store.close()
        # Unacked snapshots are safe in the agents' spools: nothing here is worth waiting for.
        context.destroy(linger=0)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    store = store_of(config)
    now = time.time()
    rows = host_status.rows(store.hosts(), config.down_after, now)
    silences = {s.host: s for s in store.silences(now)}
    for row in rows:
        s = silences.get(row["host"])
        row["silenced_until"] = None if s is None else iso(s.until)
        row["silence_reason"] = None if s is None else s.reason
    print(json.dumps(rows, indent=2) if args.json else host_status.table(rows))
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    found = peers.rows(store_of(config).collectors())
    print(json.dumps(found, indent=2) if args.json else peers.table(found))
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    active = store_of(config).alerts_active()
    rows = [
        {
            "host": a.host,
            "rule": a.rule,
            "severity": a.severity,
            "since": iso(a.started),
            "value": a.value,
            "peak": a.peak,
            "threshold": a.threshold,
        }
        for a in active
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no active alerts")
    else:
        print(
            host_status.columns(
                ALERT_COLUMNS, [[printable(_cell(r[key])) for key in ALERT_COLUMNS.values()] for r in rows]
            )
        )
    return 0


ALERT_COLUMNS = {
    "SEVERITY": "severity",
    "HOST": "host",
    "RULE": "rule",
    "SINCE": "since",
    "VALUE": "value",
    "PEAK": "peak",
    "THRESHOLD": "threshold",
}


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).upper() if value in ("warning", "critical") else str(value)


def cmd_silence(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    if not wire.valid_host(args.host):
        raise UsageError(f"{args.host!r} is not a valid host name")
    try:
        duration = parse_duration(args.duration)
    except ValueError as e:
        raise UsageError(f"--for: {e}") from None
    now = time.time()
    store = store_of(config)
    if args.host not in {h.name for h in store.hosts()}:
        # Allowed (a host not yet installed, or a typo): said, so a typo does not go unnoticed.
        print(f"osmon-collector: warning: no host {args.host!r} has reported yet", file=sys.stderr)
    store.silence(args.host, now + duration, args.reason, now)
    print(f"{args.host} silenced until {iso(now + duration)}: {args.reason}")
    return 0


def cmd_unsilence(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    lifted = store_of(config).unsilence(args.host)
    print(f"{args.host}: silence lifted" if lifted else f"{args.host} was not silenced")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    store = store_of(config, role="token")
    if args.token_command == "list":
        for t in store.tokens():
            print(f"{t.name}\tcreated {host_status.iso(t.created)}")
        return 0
    if not tokens.valid_name(args.name):
        raise UsageError(f"{args.name!r} is not a token name (letters, digits, . _ -; at most 64)")
    if args.token_command == "revoke":
        if not store.token_revoke(args.name):
            raise UsageError(f"no token named {args.name!r}")
        print(f"token {args.name} revoked")
        return 0
    if args.token_command == "set":
        return _token_set(store, args.name, _read_token(args.from_file))
    token = tokens.new()
    store.token_add(args.name, tokens.digest(token), time.time())
    print(token)
    print(
        f"osmon-collector: token {args.name} created; it is shown only this once. "
        "Send it as `Authorization: Bearer TOKEN` (Prometheus: authorization.credentials_file).",
        file=sys.stderr,
    )
    return 0


def _read_token(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--from-file {path}: {e}") from None
    token = text.strip()
    if not tokens.strong(token):
        raise UsageError(f"--from-file {path}: {tokens.STRONG}")
    return token


def _token_set(store: Store, name: str, token: str) -> int:
    """Make `token` the token `name`: a new one, a replacement, or (said, exit 0) no change at all."""
    digest = tokens.digest(token)
    holder = store.token_name(digest)
    if holder == name:
        print(f"token {name} unchanged")
        return 0
    if holder is not None:
        raise UsageError(f"this token is the token {holder!r} already: give each scraper its own")
    # A replacement is a revoke, then an add: a scrape in between is refused once, then retried.
    replaced = store.token_revoke(name)
    store.token_add(name, digest, time.time())
    print(f"token {name} {'replaced' if replaced else 'stored'}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    errors = collector_config.machine_errors(config)
    if errors:
        raise ConfigErrors(errors) if len(errors) > 1 else errors[0]
    for warning in collector_config.warnings(config):
        print(f"osmon-collector: warning: {warning}", file=sys.stderr)
    if args.connect:
        answer = check_connection(config.database, config.database_password_file)
        print(f"{args.config}: ok; database {config.database_shown}: {answer}")
        return 0
    print(f"{args.config}: ok")
    return 0


def cmd_migrate_store(args: argparse.Namespace) -> int:
    from collector.store import migrate, pg_url

    if not pg_url.is_postgresql(args.target):
        raise UsageError(f"--to {pg_url.mask(args.target)}: expected postgresql://USER@HOST:PORT/DATABASE")
    try:
        pg_url.check(args.target)
    except pg_url.DatabaseUrlError as e:
        raise UsageError(f"--to: {e}") from None
    migrate.run(args.source, args.target, args.password_file, out=sys.stdout)
    return 0


def cmd_test_mail(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    result = test_message.send(config, args.to)
    print(f"sent through {result.transport}: {result.answer}")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from collector.web.server import serve  # Flask and waitress: only this command needs them

    config = collector_config.load(args.config)
    with lock.hold_web(
        config.database, config.database_password_file
    ):  # so that `restore` knows a dashboard has the database open
        serve(config)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    if args.keep is not None and (args.output_dir is None or args.keep < 1):
        raise UsageError("--keep N needs --output-dir and N >= 1")
    config = collector_config.load(args.config)
    # Politeness towards `run`: the copy, the check and the compression get the CPU it leaves idle.
    os.nice(10)
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        output = backups.new_path(args.output_dir)
    else:
        output = _new_output(args.output)
    made = backups.create(config, output, include_secrets=args.include_secrets)
    kinds = [m.kind for m in made.members]
    secrets = (
        f", {plural(kinds.count('secret'), 'secret file')} (secrets included)" if args.include_secrets else ""
    )
    print(
        f"{made.path}: {binary(made.size)} (database {binary(made.database_size)}, schema {made.schema}; "
        f"config, {plural(kinds.count('key'), 'public key')}{secrets})"
    )
    if args.keep is not None:
        for path in backups.rotate(args.output_dir, args.keep):
            print(f"removed old backup {path}")
    return 0


def _new_output(output: Path) -> Path:
    """--output: a new file in an existing directory (a typo must not create directories or replace a backup)."""
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory (use --output-dir DIR)")
    if output.exists():
        raise UsageError(f"--output {output}: already exists; remove it or choose another name")
    if not output.parent.is_dir():
        raise UsageError(f"--output {output}: directory {output.parent} does not exist")
    return output


def cmd_restore(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    done = restores.restore(config, args.input, args.files_to)
    m = done.manifest
    migrated = f", migrated from schema {m.schema} to {done.migrated_to}" if done.migrated_to else ""
    print(
        f"restored {done.database} from {args.input} (made {m.created} on {m.host}, schema {m.schema}{migrated})"
    )
    if done.aside is not None:
        print(f"the previous database is kept as {done.aside}")
    if done.files and done.files_to is not None:
        print(f"the archive's config and keys are in {done.files_to}: compare them with the ones in use")
    elif done.files:
        print(
            f"the archive also holds {plural(len(done.files), 'other file')} (config, keys); they were not installed "
            "(use --files-to DIR to extract them for review)"
        )
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from collector.web.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("empty password")
    print(hash_password(password))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    public, secret = keys.generate(args.directory, args.name)
    print(f"wrote {public} and {secret}")
    return 0


class UsageError(Exception):
    """A bad command-line argument."""


COMMANDS = {
    "run": cmd_run,
    "status": cmd_status,
    "cluster": cmd_cluster,
    "alerts": cmd_alerts,
    "silence": cmd_silence,
    "unsilence": cmd_unsilence,
    "check-config": cmd_check_config,
    "keygen": cmd_keygen,
    "web": cmd_web,
    "hash-password": cmd_hash_password,
    "backup": cmd_backup,
    "restore": cmd_restore,
    "test-mail": cmd_test_mail,
    "token": cmd_token,
    "migrate-store": cmd_migrate_store,
}

if __name__ == "__main__":
    sys.exit(main())
