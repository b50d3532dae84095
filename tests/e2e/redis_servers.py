"""Real redis-server processes for the topology tests (Cluster, Sentinel, TLS).

- ``make_certs``: a throw-away CA, a node certificate (server and client auth: nodes connect to each
  other) and a client certificate for Hookline, all for 127.0.0.1 / localhost.
- ``Servers``: starts redis-server processes (each waited on until its log says it is ready, never a
  fixed sleep) and stops them all at the end.
- ``start_cluster``: three primaries joined with ``redis-cli --cluster create``, plain or TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import free_port

READY = "Ready to accept connections"
SENTINEL_READY = "+monitor master"  # a sentinel logs no READY line


@dataclass(frozen=True)
class Certs:
    ca: Path
    node_cert: Path
    node_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self) -> list[str]:
        """redis-server's TLS options (clients must present a certificate: tls-auth-clients yes)."""
        return ["--tls-cert-file", str(self.node_cert), "--tls-key-file", str(self.node_key),
                "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "yes"]  # fmt: skip

    def cli_args(self) -> list[str]:
        return ["--tls", "--cacert", str(self.ca), "--cert", str(self.client_cert),
                "--key", str(self.client_key)]  # fmt: skip

    def query(self) -> str:
        """The TLS query parameters of a Hookline Redis URL for these certificates."""
        return (f"ssl_ca_certs={self.ca}&ssl_certfile={self.client_cert}&ssl_keyfile={self.client_key}"
                "&ssl_cert_reqs=required")  # fmt: skip


def make_certs(directory: Path) -> Certs:
    """A CA and two leaf certificates (EC P-256: generated in milliseconds), valid for a day."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookline test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(name: str, usages: list[x509.ObjectIdentifier]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    node = leaf("node", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    client = leaf("client", [ExtendedKeyUsageOID.CLIENT_AUTH])
    return Certs(ca_path, *node, *client)


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed (Debian package redis-server)")
    return found


class Servers:
    """redis-server processes started by a test module, all stopped by ``close``."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[str]] = []

    def start(self, args: Sequence[str], ready: str = READY, keep_log: bool = False) -> subprocess.Popen[str]:
        """Start redis-server and return once its log says ``ready`` (its own readiness signal).
        Unless ``keep_log`` (the caller reads on, then calls ``release_log``), the log pipe is closed
        at once: an unread pipe would fill up and block the server."""
        process = subprocess.Popen([binary("redis-server"), *args], stdout=subprocess.PIPE, text=True)
        self._processes.append(process)
        wait_for_line(process, ready)
        if not keep_log:
            release_log(process)
        return process

    def close(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(timeout=10)
            release_log(process)


def wait_for_line(process: subprocess.Popen[str], marker: str, within: float = 30.0) -> None:
    """Read the server's log until it says ``marker``; later lines go nowhere once the pipe is closed
    (redis-server ignores SIGPIPE). A server that stays silent is killed after ``within`` seconds,
    which ends the read."""
    assert process.stdout is not None
    seen: list[str] = []
    watchdog = threading.Timer(within, process.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                return
    finally:
        watchdog.cancel()
    pytest.fail(f"redis-server exited before logging {marker!r}: {''.join(seen[-20:])}")


def release_log(process: subprocess.Popen[str]) -> None:
    if process.stdout is not None and not process.stdout.closed:
        process.stdout.close()


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too: an ephemeral port
    above 55535 would put the bus past 65535, and redis-server refuses to start."""
    for _ in range(1000):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair for a cluster node")


@contextmanager
def start_cluster(root: Path, certs: Certs | None = None, password: str | None = None) -> Iterator[list[int]]:
    """Three primaries owning every slot; with ``certs`` clients, the cluster bus and replication
    all speak TLS (``--tls-cluster yes``) and the plain port is off; with ``password`` every node
    asks for it (``requirepass``, and ``masterauth`` for replication). Yields the nodes' ports."""
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    ports = [cluster_port() for _ in range(3)]
    servers = Servers()
    try:
        processes = []
        for port in ports:
            directory = root / str(port)
            directory.mkdir()
            listen = ["--port", str(port)]
            if certs is not None:
                listen = ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                          "--tls-replication", "yes", *certs.server_args()]  # fmt: skip
            processes.append(servers.start(
                [*listen, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory),
                 "--save", "", "--appendonly", "no", *auth],
                keep_log=True,
            ))  # fmt: skip
        reach = certs.cli_args() if certs is not None else []
        if password:
            reach += ["-a", password, "--no-auth-warning"]
        nodes = [f"127.0.0.1:{port}" for port in ports]
        cli = [binary("redis-cli"), *reach, "--cluster", "create", *nodes, "--cluster-yes"]
        done = subprocess.run(cli, capture_output=True, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"could not create the cluster: {done.stdout!r} {done.stderr!r}")
        for process in processes:
            wait_for_line(process, "Cluster state changed: ok")
            release_log(process)
        yield ports
    finally:
        servers.close()
