"""`osmon-collector`: the collector's commands. The one place where errors become exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import zmq

from agent import keys
from agent.configfile import ConfigError
from agent.shutdown import Shutdown
from collector import allowlist
from collector import config as collector_config
from collector import status as host_status
from collector.ingest import Ingest, bind_socket
from collector.store import StoreError, open_store

log = logging.getLogger("osmon.collector")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="osmon-collector", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"collector config (default {collector_config.DEFAULT_PATH})"

    run = commands.add_parser("run", help="receive, store and acknowledge agent snapshots")
    run.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    status = commands.add_parser("status", help="per host: status, last seen, stored sequence")
    status.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)
    status.add_argument("--json", action="store_true", help="print a JSON list")

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", default=collector_config.DEFAULT_PATH, help=config_help)

    keygen = commands.add_parser("keygen", help="write a CurveZMQ key pair NAME.key / NAME.key_secret")
    keygen.add_argument("directory")
    keygen.add_argument("--name", required=True)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, StoreError, keys.KeyFileError) as e:
        print(f"osmon-collector: {e}", file=sys.stderr)
        return 2
    except zmq.ZMQError as e:
        print(f"osmon-collector: ZeroMQ: {e}", file=sys.stderr)
        return 1


def cmd_run(args: argparse.Namespace) -> int:
    config = collector_config.load(args.config)
    store = open_store(config.database)
    context = zmq.Context()
    shutdown = Shutdown(reload=True)
    authenticator = access = None
    try:
        if config.curve:
            # The ZAP handler must run before the socket binds, or CURVE clients go unchecked.
            authenticator, access = allowlist.start(context, config.curve_agents)
        else:
            log.warning(
                "CurveZMQ is not configured: agent traffic on %s is neither encrypted nor authenticated%s",
                config.listen,
                " (allow_insecure = true)" if config.allow_insecure else "",
            )
        socket = bind_socket(context, config)
        log.info("listening on %s, storing in %s", config.listen, config.database)
        Ingest(config, store, socket, access=access).run(shutdown)
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
    store = open_store(config.database, readonly=True)
    rows = host_status.rows(store.hosts(), config.down_after)
    print(json.dumps(rows, indent=2) if args.json else host_status.table(rows))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    collector_config.load(args.config)
    print(f"{args.config}: ok")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    public, secret = keys.generate(args.directory, args.name)
    print(f"wrote {public} and {secret}")
    return 0


COMMANDS = {"run": cmd_run, "status": cmd_status, "check-config": cmd_check_config, "keygen": cmd_keygen}

if __name__ == "__main__":
    sys.exit(main())
