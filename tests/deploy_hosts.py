"""Real Debian hosts for the deployment test: systemd-nspawn containers on a bridge in 198.18.0.0/24.

Each host boots systemd as PID 1 with sshd in its own network namespace, from a debootstrap root
file system cached as a tarball (built once, about a minute). Everything created here (containers,
network namespaces, bridge, veths) is recorded as it is created and removed by `Fleet.close()`,
which stops only the processes this module started, by PID. See the README's testing section.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("OSMON_TEST_CACHE", "/var/cache/osmon-test"))
SUITE = "bookworm"  # Debian 12; a host may boot another suite (Fleet's `suites`)
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,openssh-server,iproute2,sudo"
BRIDGE = "osmt-br0"
BRIDGE_ADDRESS = "198.18.0.1"  # RFC 2544 benchmarking range: never a real host
PREFIX = 24


def missing_tools() -> str | None:
    """Why this machine cannot run the fleet, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, a bridge and systemd-nspawn containers)"
    for tool in ("systemd-nspawn", "debootstrap", "ssh", "ssh-keygen", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install systemd-container debootstrap openssh-client iproute2)"
    return None


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def rootfs_tarball(suite: str = SUITE) -> Path:
    """The cached debootstrap tarball of `suite`, built on first use (debootstrap from the Debian mirror)."""
    digest = hashlib.sha1(f"{suite} {PACKAGES}".encode()).hexdigest()[:10]
    tarball = CACHE / f"rootfs-{suite}-{digest}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / f"build-{os.getpid()}"
    try:
        run(
            "debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(build),
            "http://deb.debian.org/debian", timeout=1200,
        )  # fmt: skip
        # Each host gets its own machine id (written at boot) and its own ssh host keys.
        (build / "etc/machine-id").write_text("")
        for key in (build / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(build, arcname=".")
        partial.rename(tarball)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return tarball


def package_mirror(suite: str, packages: tuple[str, ...]) -> Path:
    """A cached flat APT repository of `packages` for `suite`: the debs a fresh host of that suite lacks.

    What an air-gapped site has as its Debian mirror. Built once (from the Debian mirror, in a
    container of the cached root file system, which downloads without installing), then reused.
    """
    digest = hashlib.sha1(f"{suite} {PACKAGES} {' '.join(packages)}".encode()).hexdigest()[:10]
    mirror = CACHE / f"mirror-{suite}-{digest}"
    if (mirror / "Packages").exists():
        return mirror
    build = CACHE / f"build-{os.getpid()}"
    try:
        build.mkdir(parents=True)
        run("tar", "-C", str(build), "-xf", str(rootfs_tarball(suite)))
        script = (
            "apt-get clean && apt-get -qq update && apt-get -qq -y --no-install-recommends --download-only install "
            + " ".join(packages)
        )
        run(
            "systemd-nspawn", "--quiet", "-D", str(build), "--resolv-conf=copy-host", "--register=no", "--keep-unit",
            "--pipe", "sh", "-c", script, timeout=1200,
        )  # fmt: skip
        partial = mirror.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        index = []
        for deb in sorted((build / "var/cache/apt/archives").glob("*.deb")):
            shutil.copy(deb, partial / deb.name)
            fields = run("dpkg-deb", "-f", str(deb)).stdout.rstrip("\n")
            digest_ = hashlib.sha256(deb.read_bytes()).hexdigest()
            index.append(f"{fields}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest_}\n")
        (partial / "Packages").write_text("\n".join(index))
        partial.rename(mirror)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return mirror


@dataclass
class Host:
    name: str
    address: str
    root: Path
    netns: str
    veth: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


class Fleet:
    """Booted hosts reachable over ssh as root with the fleet's key; `close()` removes everything."""

    def __init__(
        self,
        workdir: Path,
        names: list[str],
        suites: dict[str, str] | None = None,
        mirrors: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.dir = workdir
        self.suites = {name: (suites or {}).get(name, SUITE) for name in names}
        # Hosts whose only package source is a local mirror of these packages (file:/srv/debian-mirror).
        self.mirrors = mirrors or {}
        self.key = workdir / "id_ed25519"
        self.hosts = {
            name: Host(
                name=name,
                address=f"198.18.0.{11 + i}",
                root=workdir / "hosts" / name,
                netns=f"osmt-{name}",
                veth=f"osmt-v{i}",
            )
            for i, name in enumerate(names)
        }
        self.bridge = False
        self.netns: list[str] = []
        self.veths: list[str] = []
        self.logs: list[object] = []

    # --- setup --------------------------------------------------------------------------------

    def start(self) -> None:
        tarballs = {suite: rootfs_tarball(suite) for suite in set(self.suites.values())}
        mirrors = {
            name: package_mirror(self.suites[name], packages) for name, packages in self.mirrors.items()
        }
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        self._bridge()
        for host in self.hosts.values():
            self._unpack(host, tarballs[self.suites[host.name]])
            if host.name in mirrors:
                self._mirror(host, mirrors[host.name])
            self._network(host)
            self._boot(host)
        for host in self.hosts.values():
            self.wait_running(host)

    def _bridge(self) -> None:
        if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            raise RuntimeError(f"{BRIDGE} already exists: another deployment test runs, or one was killed")
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        self.bridge = True
        run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/{PREFIX}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")

    def _unpack(self, host: Host, tarball: Path) -> None:
        host.root.mkdir(parents=True)
        run("tar", "-C", str(host.root), "-xf", str(tarball))
        (host.root / "etc/hostname").write_text(f"{host.name}\n")
        (host.root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n")
        ssh = host.root / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)
        for kind in ("ed25519",):
            run(
                "ssh-keygen",
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-f",
                str(host.root / f"etc/ssh/ssh_host_{kind}_key"),
            )

    def _mirror(self, host: Host, mirror: Path) -> None:
        """The host's package sources: the local mirror only, as on an air-gapped network."""
        shutil.copytree(mirror, host.root / "srv/debian-mirror")
        (host.root / "etc/apt/sources.list").write_text("deb [trusted=yes] file:/srv/debian-mirror ./\n")
        for stale in (host.root / "var/lib/apt/lists").glob("deb.debian.org_*"):
            stale.unlink()

    def _network(self, host: Host) -> None:
        run("ip", "netns", "add", host.netns)
        self.netns.append(host.netns)
        run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        self.veths.append(host.veth)
        run("ip", "link", "set", host.veth, "master", BRIDGE, "up")
        run("ip", "-n", host.netns, "addr", "add", f"{host.address}/{PREFIX}", "dev", "eth0")
        run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        run("ip", "-n", host.netns, "link", "set", "lo", "up")

    def _boot(self, host: Host) -> None:
        log = open(self.dir / f"{host.name}.console.log", "wb")  # noqa: SIM115 - closed in close()
        self.logs.append(log)
        host.process = subprocess.Popen(
            [
                "systemd-nspawn", "--quiet", "--boot", "-D", str(host.root), "-M", host.name,
                f"--network-namespace-path=/run/netns/{host.netns}", "--register=no", "--keep-unit",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_running(self, host: Host, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if host.process is None or host.process.poll() is not None:
                raise RuntimeError(
                    f"{host.name} stopped while booting; see {self.dir}/{host.name}.console.log"
                )
            result = self.ssh(host.name, "systemctl is-system-running --wait", check=False, timeout=60)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{host.name} did not finish booting ({state!r})")

    # --- use ----------------------------------------------------------------------------------

    def ssh_args(self, name: str) -> list[str]:
        return [
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
            f"root@{self.hosts[name].address}",
        ]  # fmt: skip

    def ssh(
        self, name: str, command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.ssh_args(name), command], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{name}: {command!r} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def inventory(self, collectors: list[str], agents: list[str], database: str | None = None) -> dict:
        """An Ansible inventory (as a dict for YAML/JSON) of this fleet, reached as root over ssh."""
        ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        return {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.key),
                    "ansible_ssh_common_args": ssh_args,
                },
                "hosts": {h.name: {"ansible_host": h.address} for h in self.hosts.values()},
                "children": {
                    "collector": {"hosts": dict.fromkeys(collectors)},
                    "agents": {"hosts": dict.fromkeys(agents)},
                    **({"database": {"hosts": {database: None}}} if database else {}),
                },
            }
        }

    def power_off(self, name: str, timeout: float = 60) -> None:
        """Shut a host down the way an operator would (systemd stops its services), and wait."""
        host = self.hosts[name]
        assert host.process is not None
        host.process.send_signal(signal.SIGTERM)  # systemd-nspawn --boot: an orderly poweroff
        try:
            host.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill(host)

    # --- teardown -----------------------------------------------------------------------------

    def _container_init(self, host: Host) -> int | None:
        """PID (on this side) of the container's init, the child of our systemd-nspawn."""
        if host.pid is None:
            return None
        try:
            children = Path(f"/proc/{host.pid}/task/{host.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def _kill(self, host: Host) -> None:
        # Killing a PID namespace's init kills every process in it.
        init = self._container_init(host)
        for pid in (init, host.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if host.process is not None:
            host.process.wait(30)

    def close(self) -> None:
        """Power every host off (killing what does not stop), then remove the network and files."""
        running = [h for h in self.hosts.values() if h.process is not None and h.process.poll() is None]
        for host in running:
            host.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for host in running:
            try:
                host.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(host)
        for veth in self.veths:
            run("ip", "link", "del", veth, check=False)
        for netns in self.netns:
            run("ip", "netns", "del", netns, check=False)
        if self.bridge:
            run("ip", "link", "del", BRIDGE, check=False)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir / "hosts", ignore_errors=True)
