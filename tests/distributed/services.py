"""Private PostgreSQL and RabbitMQ instances that a fault test may stop, restart and kill.

The machine's own services are shared with other test runs and must never be restarted, so
each test session starts its own: a PostgreSQL cluster made by `initdb` in a temporary
directory (run as the `postgres` user when we are root, as initdb insists) and a RabbitMQ node
of its own name, ports and data directory. Both listen on loopback and, for workers in network
namespaces, on the bridge address. Their processes are children of the test run that die
with it (PR_SET_PDEATHSIG), so even a killed test run leaves nothing behind but /tmp files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pika
import pika.exceptions
import psycopg

STARTUP_SECONDS = 60.0
# Ports RabbitMQ's own tools take for themselves: the default node's AMQP and distribution
# ports and the range the CLI tools (rabbitmqctl) listen on while they run.
_RABBITMQ_RESERVED = {5672, 25672, *range(35672, 35683)}
_PR_SET_PDEATHSIG = 1


class ServiceUnavailable(Exception):
    """The binaries of a service are missing or it cannot run here (the reason says why)."""


def free_port() -> int:
    """A TCP port free on every address now, below the kernel's ephemeral range (so no
    outgoing connection can take it before the service binds it) and not one of RabbitMQ's
    tools' ports."""
    first_ephemeral = _first_ephemeral_port()
    while True:
        port = 20000 + secrets.randbelow(max(1, min(first_ephemeral, 32768) - 20000))
        if port in _RABBITMQ_RESERVED:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
        return port


def _first_ephemeral_port() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def die_with_parent(user: str | None = None) -> Callable[[], None]:
    """A preexec_fn: become `user` (if given) and receive SIGKILL when the test run dies."""
    account = pwd.getpwnam(user) if user else None

    def prepare() -> None:
        if account is not None:
            os.setgid(account.pw_gid)
            os.setgroups([account.pw_gid])
            os.setuid(account.pw_uid)
        # set after setuid: a change of credentials clears the parent-death signal
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return prepare


def _wait(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path
) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {STARTUP_SECONDS:.0f} s:\n{tail(log)}")
        time.sleep(0.1)


def tail(path: Path, lines: int = 80) -> str:
    """The last lines of a log file (for failure messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _postgres_bin() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ServiceUnavailable("no PostgreSQL server binaries (initdb) on this machine")
    return Path(initdb).parent


class PrivatePostgres:
    """A PostgreSQL cluster of this test session (trust authentication, no fsync).

    `restart` stops it as `pg_ctl restart` does (fast shutdown: SIGINT to the postmaster;
    `immediate=True`: SIGQUIT, a crash without a checkpoint) and starts it again on the same
    data directory and port."""

    def __init__(self, addresses: Sequence[str], *, network: str | None = None) -> None:
        self.bin = _postgres_bin()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            try:
                account = pwd.getpwnam(self.user)
            except KeyError:
                raise ServiceUnavailable("we are root and there is no postgres user") from None
        self.addresses = tuple(addresses)
        self.network = network  # a CIDR whose hosts may connect too (the namespaces)
        self.port = free_port()
        # not under pytest's tmp dirs: those are private to root, and we run as postgres
        self.root = Path(tempfile.mkdtemp(prefix="ocrswarm-pg-"))
        if self.user is not None:
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def start(self) -> None:
        """initdb (the first time) and start the postmaster; returns once it answers."""
        if not self.data.exists():
            initdb = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust"]
            subprocess.run(
                [*initdb, "-U", "postgres", "-E", "UTF8", "--no-sync"],
                check=True,
                capture_output=True,
                preexec_fn=die_with_parent(self.user),
            )
            with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as hba:
                if self.network is not None:
                    hba.write(f"host all all {self.network} trust\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 — the child keeps it
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                *("-D", str(self.data), "-p", str(self.port), "-k", str(self.root)),
                *("-c", f"listen_addresses={','.join(self.addresses)}"),
                # no fsync: the machine never crashes here, only PostgreSQL does
                *("-c", "fsync=off", "-c", "full_page_writes=off"),
                *("-c", "max_connections=300"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(self.user),
        )
        log.close()
        _wait(self._answers, self.process, "PostgreSQL", self.log_path)

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def stop(self, *, immediate: bool = False) -> None:
        if self.process is not None:
            _stop_process(self.process, signal.SIGQUIT if immediate else signal.SIGINT, 60)
            self.process = None

    def restart(self, *, immediate: bool = False, down_seconds: float = 0.0) -> None:
        """Stop, stay down for `down_seconds`, start again (clients see their connections
        broken and new ones refused meanwhile)."""
        self.stop(immediate=immediate)
        time.sleep(down_seconds)
        self.start()

    def create_database(self) -> str:
        """A new empty database; its URL (loopback)."""
        name = f"ocrswarm_{secrets.token_hex(5)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop(immediate=True)
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRabbitMQ:
    """A RabbitMQ node of this test session, `ocrswarm-test-<hex>@localhost`.

    `stop_app`/`start_app` are the issue's `rabbitmqctl stop_app`/`start_app` on this node:
    the Erlang VM stays, the broker inside it stops (every connection closed, listeners
    down) and starts again with its durable queues and persistent messages."""

    def __init__(self, addresses: Sequence[str]) -> None:
        server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        ctl = server.with_name("rabbitmqctl")
        if not server.is_file():
            found = shutil.which("rabbitmq-server")
            if found is None:
                raise ServiceUnavailable("no rabbitmq-server on this machine")
            server, ctl = Path(found), Path(found).with_name("rabbitmqctl")
        self.server_bin, self.ctl_bin = server, ctl
        self.addresses = tuple(addresses)
        self.node = f"ocrswarm-test-{secrets.token_hex(4)}@localhost"
        self.root = Path(tempfile.mkdtemp(prefix="ocrswarm-mq-"))
        self.log_path = self.root / "rabbitmq.log"
        self.process: subprocess.Popen[bytes] | None = None
        (self.root / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        (self.root / "rabbitmq-env.conf").write_text("", encoding="utf-8")
        self._choose_ports()

    def _choose_ports(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        listeners = "".join(
            f"listeners.tcp.{n} = {address}:{self.port}\n"
            for n, address in enumerate(self.addresses, 1)
        )
        (self.root / "rabbitmq.conf").write_text(
            listeners + "loopback_users = none\ndisk_free_limit.absolute = 50MB\n",
            encoding="utf-8",
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.pop("NOTIFY_SOCKET", None)
        env.update(
            HOME=str(self.root),  # the Erlang cookie the node and rabbitmqctl share
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RUNNING_UNDER_SYSTEMD="true",  # exec the VM: our child is the node itself
        )
        return env

    def url(self, vhost: str = "/", host: str = "127.0.0.1", query: str = "") -> str:
        path = "%2F" if vhost == "/" else vhost
        return f"amqp://guest:guest@{host}:{self.port}/{path}" + (f"?{query}" if query else "")

    def start(self, attempts: int = 3) -> None:
        """Start the node; a boot that fails (a port taken meanwhile by someone else) is
        tried again on other ports."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except RuntimeError:
                if attempt == attempts or (self.process and self.process.poll() is None):
                    raise
                shutil.rmtree(self.root / "mnesia", ignore_errors=True)
                self._choose_ports()

    def _start_once(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 — the child keeps it
        self.process = subprocess.Popen(
            [self.server_bin],
            env=self._env(),
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.close()
        _wait(self.answers, self.process, "RabbitMQ", self.log_path)

    def answers(self) -> bool:
        """Whether an AMQP connection to the node succeeds now."""
        try:
            parameters = pika.URLParameters(self.url())
            parameters.connection_attempts = 1
            parameters.socket_timeout = 2
            pika.BlockingConnection(parameters).close()
        except (pika.exceptions.AMQPError, OSError):
            return False
        return True

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """Run `rabbitmqctl -n NODE ARGS`; its output (RuntimeError with it on failure)."""
        done = subprocess.run(
            [self.ctl_bin, "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        assert self.process is not None
        _wait(self.answers, self.process, "RabbitMQ (start_app)", self.log_path)

    def add_vhost(self) -> str:
        """A new virtual host that guest may use fully; its name."""
        vhost = f"ocrswarm-{secrets.token_hex(5)}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctl("stop", timeout=30)
            _stop_process(self.process, signal.SIGTERM, 30)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
