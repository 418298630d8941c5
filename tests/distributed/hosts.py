"""Separate "hosts" on one machine: network namespaces behind a bridge of their own.

Each host is a namespace `osw<hex>-<n>` with a veth pair whose outer end hangs on the bridge
`osw<hex>`; the bridge holds `.1` of a random 10.x.y.0/24 (the services and the server listen
there), host n gets `.n+1`. Files stay shared (a namespace separates the network only), as
an NFS mount would be. `cut` takes a host's cable out (the outer veth end down): its TCP
connections go silent, no reset, no FIN, exactly like a partition or a dead switch port.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass


class NamespacesUnavailable(Exception):
    """This sandbox does not let us make network namespaces (the reason says why)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def check_namespaces() -> None:
    """NamespacesUnavailable unless `ip netns add` and veth pairs work here."""
    if shutil.which("ip") is None:
        raise NamespacesUnavailable("no `ip` command (iproute2)")
    if os.geteuid() != 0:
        raise NamespacesUnavailable("network namespaces need root")
    probe = f"oswprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        raise NamespacesUnavailable(f"ip netns add: {made.stderr.strip()}")
    try:
        end = f"{probe[:10]}a"
        veth = _ip("link", "add", end, "type", "veth", "peer", "name", f"{end}b", check=False)
        if veth.returncode != 0:
            raise NamespacesUnavailable(f"ip link add … type veth: {veth.stderr.strip()}")
        _ip("link", "del", end, check=False)
    finally:
        _ip("netns", "del", probe, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address or route of this machine mentions."""
    used = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
    while True:
        network = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}.0/24"
        )
        prefix = str(network.network_address).rsplit(".", 1)[0] + "."
        if prefix not in used:
            return network


@dataclass
class Host:
    """One namespace: its name, its address on the bridge, the outer end of its cable."""

    namespace: str
    address: str
    cable: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """Pull the cable: the host can no longer reach anyone, nor anyone it."""
        _ip("link", "set", self.cable, "down")

    def heal(self) -> None:
        _ip("link", "set", self.cable, "up")


class Hosts:
    """A bridge and the namespaces behind it; `close` removes all of them."""

    def __init__(self) -> None:
        check_namespaces()
        self.tag = f"osw{secrets.token_hex(3)}"
        self.bridge = self.tag
        self.network = _free_subnet()
        self.address = str(self.network.network_address + 1)  # this machine, on the bridge
        self.hosts: list[Host] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.address}/{self.network.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except RuntimeError:
            self.close()
            raise

    def add(self) -> Host:
        """A new host, connected."""
        n = len(self.hosts) + 1
        namespace = f"{self.tag}-{n}"
        outer, inner = f"{self.tag}o{n}", f"{self.tag}i{n}"
        address = str(self.network.network_address + 1 + n)
        _ip("netns", "add", namespace)
        host = Host(namespace, address, outer)
        self.hosts.append(host)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        inside = ["ip", "-n", namespace]
        for args in (
            ["addr", "add", f"{address}/{self.network.prefixlen}", "dev", inner],
            ["link", "set", inner, "up"],
            ["link", "set", "lo", "up"],
        ):
            subprocess.run([*inside, *args], check=True, capture_output=True)
        return host

    def close(self) -> None:
        for host in self.hosts:
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", host.namespace)  # takes its veth pair with it
        self.hosts.clear()
        _ip("link", "del", self.bridge, check=False)
