"""`make demo`: the whole inventory on this machine, with a sample AWS estate.

Starts (or takes from DATABASE_URL and NATS_URL) PostgreSQL and NATS, migrates
a database of the demo's own, starts moto's server with three sample accounts,
starts the four services, registers the accounts and runs a polling cycle
through the API, then prints where to look. Ctrl-C (or SIGTERM) stops it all.

State lives under `.demo/`. Each run starts from an empty database and empty
streams of the demo's own namespace, so running it twice works; a second demo
running at the same time takes the next free slot (`.demo/slot-1`, ...). The
namespace (and the database, `inventory_<namespace>`) is named after the
machine and the state directory, so demos of other checkouts sharing one
PostgreSQL and NATS never reset each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import nats

from deploy.api_client import ApiClient
from deploy.estate import ACCOUNTS, Estate
from deploy.processes import ServiceExited, ServiceGroup, describe_exit
from deploy.standin import standin
from shared import devservers
from shared.db import admin

CYCLE_TIMEOUT_SECONDS = 180.0
READY_TIMEOUT_SECONDS = 60.0
MAX_SLOTS = 10


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


@contextlib.contextmanager
def demo_slot(root: Path) -> Iterator[Path]:
    """The first state directory no other running demo holds, locked while we run."""
    for index in range(MAX_SLOTS):
        state_dir = root if index == 0 else root / f"slot-{index}"
        state_dir.mkdir(parents=True, exist_ok=True)
        lock: IO[str] = (state_dir / "demo.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            yield state_dir
        finally:
            lock.close()
        return
    raise SystemExit(f"{MAX_SLOTS} demos are running already; stop one first")


def demo_namespace(state_dir: Path) -> str:
    """The bus namespace of the demo kept in `state_dir`, unique to this machine's path.

    Letters and digits only: `demo_` would be a prefix of another namespace's
    stream names, and the reset would then remove them.
    """
    place = f"{socket.gethostname()}:{state_dir.resolve()}"
    return "demo" + hashlib.sha256(place.encode()).hexdigest()[:8]


def namespace_streams(names: list[str], namespace: str) -> list[str]:
    """The streams, key-value and object buckets that belong to `namespace`."""
    prefixes = (f"{namespace}_", f"kv_{namespace}_", f"obj_{namespace}_")
    return [name for name in names if name.lower().startswith(prefixes)]


async def reset_bus(nats_url: str, namespace: str) -> None:
    """Delete the demo namespace's streams and buckets left by an earlier run."""
    client = await nats.connect(nats_url, connect_timeout=10)
    try:
        js = client.jetstream()
        existing = [info.config.name or "" for info in await js.streams_info()]
        for stream in namespace_streams(existing, namespace):
            await js.delete_stream(stream)
    finally:
        await client.drain()


async def reset_database(server_url: str, name: str) -> str:
    """A fresh, migrated database `name` on the server; returns its URL."""
    await admin.drop_database(server_url, name)
    url = await admin.create_database(server_url, name)
    await asyncio.to_thread(admin.upgrade, url)
    return url


def api_port(preferred: int) -> int:
    try:
        devservers.wait_for_port("127.0.0.1", preferred, timeout=0.2)
    except TimeoutError:
        return preferred
    return devservers.free_port()


def service_env(
    database_url: str, nats_url: str, namespace: str, estate: Estate, port: int
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "NATS_NAMESPACE": namespace,
        "LOG_FORMAT": "json",
        "AWS_ENDPOINT_URL": estate.endpoint_url,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "SCHEDULED_POLLING_STAGGER_SECONDS": "1",
        "POLLER_CALLS_PER_SECOND": "50",
    }


def raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped


def say(message: str = "") -> None:
    print(message, flush=True)


def summarise(client: ApiClient, task: dict[str, Any]) -> None:
    say(f"Polling cycle {task['task_id']}: {task['status']}")
    for child in task.get("child_tasks", []):
        line = f"  account {child['account_id']}: {child['status']}"
        if child.get("error") or child.get("reason"):
            line += f" ({child.get('error') or child.get('reason')})"
        say(line)
    counts = {
        path: client.count(path)
        for path in ("vpcs", "subnets", "security-groups", "enis", "instances")
    }
    say("Inventory: " + ", ".join(f"{n} {path}" for path, n in counts.items()))


def print_where_to_look(
    base_url: str, token: str, estate: Estate, state_dir: Path
) -> None:
    public_ip = next(iter(estate.public_ips.values()), "10.10.1.10")
    say()
    say("The inventory is running.")
    say(f"  API         {base_url}/api/v1  (/accounts, /vpcs, /enis, /ip/ADDRESS, ...)")
    say(f"  API docs    {base_url}/docs")
    say(f"  Tasks page  {base_url}/tasks/  (sign in with the token)")
    say(f"  Admin token {token}")
    say(f"  AWS stand-in {estate.endpoint_url}  (moto)")
    say(f"  Logs        {state_dir / 'logs'}/")
    say()
    say("Try:")
    say(f'  curl -H "Authorization: Bearer {token}" {base_url}/api/v1/ip/{public_ip}')
    say(f'  curl -H "Authorization: Bearer {token}" "{base_url}/api/v1/enis?limit=5"')
    say(f'  curl -X POST -H "Authorization: Bearer {token}" {base_url}/api/v1/polls')
    say()
    say("Ctrl-C stops everything.")


def run(args: argparse.Namespace) -> int:
    root = Path(args.state_dir).resolve()
    with contextlib.ExitStack() as stack:
        state_dir = stack.enter_context(demo_slot(root))
        namespace = demo_namespace(state_dir)
        say(f"State in {state_dir}; bus namespace {namespace!r}")

        say("Starting PostgreSQL and NATS ...")
        server_url = stack.enter_context(devservers.postgres_url(state_dir))
        nats_url = stack.enter_context(devservers.nats_url(state_dir))
        asyncio.run(reset_bus(nats_url, namespace))
        database_url = asyncio.run(reset_database(server_url, f"inventory_{namespace}"))

        say("Starting the AWS stand-in and seeding three sample accounts ...")
        estate = stack.enter_context(standin())

        token = args.token or secrets.token_urlsafe(24)
        (state_dir / "admin-token").write_text(token + "\n")
        port = api_port(args.api_port)
        env = service_env(database_url, nats_url, namespace, estate, port)
        services = ServiceGroup(
            env={**env, "API_ADMIN_TOKEN": token}, log_dir=state_dir / "logs"
        )
        stack.callback(stop_services, services)
        say("Starting the scheduler, poller, reconciler and API ...")
        services.start_all()

        base_url = f"http://127.0.0.1:{port}"
        client = ApiClient(base_url, token)
        abort = services.raise_if_exited
        client.wait_ready(READY_TIMEOUT_SECONDS, abort)
        client.register_sample_accounts()
        say(f"Registered {len(ACCOUNTS)} accounts; running a polling cycle ...")
        task = client.wait_for_task(client.start_cycle(), CYCLE_TIMEOUT_SECONDS, abort)
        summarise(client, task)
        print_where_to_look(base_url, token, estate, state_dir)

        if args.exit_after_cycle:
            return 0 if task["status"] == "succeeded" else 1
        exited = services.wait_any()
        for name, code in exited:
            say(f"{name} stopped with exit code {code}; see {state_dir / 'logs'}")
        return 1


def stop_services(services: ServiceGroup) -> None:
    say("Stopping the services ...")
    codes = services.stop_all()
    say(
        "Stopped: "
        + ", ".join(f"{name} ({describe_exit(code)})" for name, code in codes.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=os.environ.get("DEMO_DIR", ".demo"))
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--token", help="the demo's admin token (random if unset)")
    parser.add_argument(
        "--exit-after-cycle",
        action="store_true",
        help="stop once the first cycle is done (a smoke test of the stack)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_stopped)
    try:
        code = run(args)
    except (Stopped, KeyboardInterrupt):
        say("Stopped.")
        code = 0
    except (ServiceExited, TimeoutError) as error:
        say(f"The demo could not start: {error}")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
