"""Keys for `benchmarks/ingest.py --curve`: a collector key pair and one allow-listed pair per agent."""

from __future__ import annotations

from pathlib import Path

import zmq


def make_keys(
    workdir: Path, config_text: str, agents: int
) -> tuple[str, dict[str, tuple[bytes, bytes, bytes]]]:
    """The collector config with [curve] added, and {host: (public, secret, server public)}."""
    allow = workdir / "keys" / "agents"
    allow.mkdir(parents=True)
    server_public, server_secret = zmq.curve_keypair()
    secret_file = workdir / "keys" / "collector.key_secret"
    secret_file.write_text(
        f'metadata\ncurve\n    public-key = "{server_public.decode()}"\n    secret-key = "{server_secret.decode()}"\n'
    )
    clients = {}
    for i in range(agents):
        host = f"bench-{i:04d}"
        public, secret = zmq.curve_keypair()
        (allow / f"{host}.key").write_text(f'metadata\ncurve\n    public-key = "{public.decode()}"\n')
        clients[host] = (public, secret, server_public)
    config_text += f'[curve]\nsecret_key = "{secret_file}"\nagents = "{allow}"\n'
    return config_text, clients
