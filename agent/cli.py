"""`osmon-agent`: the agent's commands. The one place where errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time

import zmq

from agent import config as agent_config
from agent.spool import SpoolError, SpoolLock
from osmon import __version__, keys, wire
from osmon.arguments import Parser, guarded
from osmon.configfile import ConfigError
from osmon.filemode import narrow_umask
from osmon.printable import escape_logs
from osmon.shutdown import Shutdown
from osmon.words import plural

log = logging.getLogger("osmon.agent")

# Shown by --help (the module docstring is for developers).
DESCRIPTION = "osMonitoring agent: collects this host's figures and pushes them to the collector."


def positive(value: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="osmon-agent", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"osmon-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"agent config (default {agent_config.DEFAULT_PATH})"

    run = commands.add_parser("run", help="collect snapshots and push them to the collector")
    run.add_argument("--config", default=agent_config.DEFAULT_PATH, help=config_help)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    once = commands.add_parser("once", help="collect one snapshot and print it as JSON")
    once.add_argument("--top", type=positive, default=5, help="processes listed by CPU and by memory")

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("--config", default=agent_config.DEFAULT_PATH, help=config_help)

    keygen = commands.add_parser("keygen", help="write a CurveZMQ key pair NAME.key / NAME.key_secret")
    keygen.add_argument("directory")
    keygen.add_argument("--name", required=True)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    escape_logs()
    narrow_umask(0o077)  # the spool holds command lines and user names: the agent's user only
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The error boundary: every expected failure becomes one line per problem and exit status 2."""
    expected = {ConfigError: "", SpoolError: "", keys.KeyFileError: "", zmq.ZMQError: "ZeroMQ: "}
    return guarded("osmon-agent", lambda: COMMANDS[args.command](args), expected)


def cmd_run(args: argparse.Namespace) -> int:
    config = agent_config.load(args.config)
    with SpoolLock(config.spool):
        return _run(config)


def _run(config: agent_config.AgentConfig) -> int:
    from agent.daemon import Agent
    from agent.link import Link
    from agent.mounts import Exclude
    from agent.sampler import Sampler
    from agent.spool import Spool

    spool = Spool(config.spool, config.spool_max)
    context = zmq.Context()
    shutdown = Shutdown()
    link = None
    try:
        link = Link(context, config)
        log.info(
            "agent %s for host %s: a snapshot every %gs to %s (%s waiting in the spool)",
            __version__,
            config.host,
            config.interval,
            config.collector,
            plural(spool.pending_count(), "snapshot"),
        )
        if len(config.collectors) > 1:
            log.info("collectors in this host's order (home first): %s", ", ".join(config.collectors))
        raise_descriptor_limit()
        sampler = Sampler(
            top_n=config.top_processes,
            exclude=Exclude(config.exclude_mounts, config.exclude_fstypes),
            mount_timeout=config.mount_timeout,
            ignore_units=config.ignore_units,
        )
        Agent(config, sampler, spool, link).run(shutdown)
    finally:
        if link is not None:
            link.close()
        shutdown.close()
        spool.close()
        context.destroy(linger=0)
    return 0


def raise_descriptor_limit(wanted: int = 16384) -> None:
    """Lift the soft limit on open files towards the hard one, as Go programs (node_exporter) do.

    The process scan keeps a /proc/<pid>/stat file open per process (up to a quarter of
    the soft limit): systemd's default soft limit of 1,024 would make it reopen most of
    them on a host with a thousand processes.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cmd_once(args: argparse.Namespace) -> int:
    import json  # only here: the daemon never prints JSON
    import socket

    from agent.sampler import Sampler

    sampler = Sampler(top_n=args.top)
    time.sleep(0.25)  # CPU and rate figures need two readings
    probes, errors = sampler.sample()
    snapshot = {
        "v": wire.SCHEMA_VERSION,
        "host": socket.gethostname().split(".")[0],
        "seq": 0,
        "ts": time.time(),
        "agent": __version__,
        "probes": probes,
        "errors": errors,
    }
    print(json.dumps(snapshot, indent=2, sort_keys=False))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = agent_config.load(args.config)
    print(f"{args.config}: ok")
    if len(config.collectors) > 1:
        print(f"collectors for host {config.host}, in order (home first, then failover):")
        for rank, endpoint in enumerate(config.collectors, 1):
            print(f"  {rank}. {endpoint}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    public, secret = keys.generate(args.directory, args.name)
    print(f"wrote {public} and {secret}")
    return 0


COMMANDS = {"run": cmd_run, "once": cmd_once, "check-config": cmd_check_config, "keygen": cmd_keygen}

if __name__ == "__main__":
    sys.exit(main())
