"""API latency under concurrent load: IP lookup and a filtered ENI list page.

Loads BENCH_API_ENIS ENIs (default 100,000) into a database of its own, serves
it with `python -m services.api`, and drives it from a separate process (wrk
when installed, otherwise a Python load process) on 127.0.0.1 only, at each
number of concurrent connections in BENCH_API_CONNECTIONS (default 2,4,8).
Prints p50/p99 latency and requests per second for each scenario and
concurrency, then at which concurrencies the p99 targets hold.

    BENCH_API_ENIS=5000 BENCH_API_SECONDS=3 BENCH_API_CONNECTIONS=1,4 \
        python -m bench api
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text

from shared.db import admin
from shared.db.engine import make_engine
from shared.devservers import free_port

ENIS = int(os.environ.get("BENCH_API_ENIS", "100000"))
SECONDS = float(os.environ.get("BENCH_API_SECONDS", "10"))
CONNECTIONS = [
    int(n) for n in os.environ.get("BENCH_API_CONNECTIONS", "2,4,8").split(",")
]
WORKERS = int(os.environ.get("BENCH_API_WORKERS", "2"))
SERVER_URL = os.environ.get(
    "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
TOKEN = "bench-reader-" + uuid.uuid4().hex
VPCS = max(1, ENIS // 1000)
SUBNETS_PER_VPC = 4
ACCOUNTS = 20
TARGETS = {"ip lookup": 10.0, "filtered list page": 50.0}

LOAD_SQL = """
INSERT INTO accounts (account_id, account_name, auth_method, default_regions)
SELECT lpad(a::text, 12, '0'), 'account-' || a, 'instance_role', '{eu-west-1}'
FROM generate_series(1, :accounts) a;

INSERT INTO region_polls (account_id, region, last_applied_at)
SELECT lpad(a::text, 12, '0'), 'eu-west-1', now() FROM generate_series(1, :accounts) a;

INSERT INTO vpcs (vpc_id, region, owner_account_id, reported_by, seen_by,
                  cidr_block, state)
SELECT 'vpc-' || lpad(to_hex(v), 8, '0'), 'eu-west-1',
       lpad((v % :accounts + 1)::text, 12, '0'),
       lpad((v % :accounts + 1)::text, 12, '0'),
       ARRAY[lpad((v % :accounts + 1)::text, 12, '0')], '10.0.0.0/8', 'available'
FROM generate_series(1, :vpcs) v;

INSERT INTO subnets (subnet_id, vpc_id, region, owner_account_id, reported_by, seen_by,
                     state)
SELECT 'subnet-' || lpad(to_hex(s), 8, '0'),
       'vpc-' || lpad(to_hex((s - 1) / :per_vpc + 1), 8, '0'), 'eu-west-1',
       '000000000001', '000000000001', ARRAY['000000000001'], 'available'
FROM generate_series(1, :vpcs * :per_vpc) s;

INSERT INTO security_groups (group_id, group_name, vpc_id, region, owner_account_id,
                             reported_by, seen_by)
SELECT 'sg-' || lpad(to_hex(v), 8, '0'), 'group-' || v,
       'vpc-' || lpad(to_hex(v), 8, '0'), 'eu-west-1', '000000000001',
       '000000000001', ARRAY['000000000001']
FROM generate_series(1, :vpcs) v;

INSERT INTO security_group_rules (rule_id, group_id, is_egress, ip_protocol,
                                  from_port, to_port, cidr_ipv4)
SELECT 'sgr-' || lpad(to_hex(v * 2 + e), 8, '0'), 'sg-' || lpad(to_hex(v), 8, '0'),
       e = 1, 'tcp', 443, 443, '0.0.0.0/0'
FROM generate_series(1, :vpcs) v, generate_series(0, 1) e;

INSERT INTO enis (eni_id, vpc_id, subnet_id, region, owner_account_id, reported_by,
                  seen_by, interface_type, status, private_ip, tags,
                  attachment_instance_id)
SELECT 'eni-' || lpad(to_hex(n), 8, '0'),
       'vpc-' || lpad(to_hex(n % :vpcs + 1), 8, '0'),
       'subnet-' || lpad(to_hex((n % :vpcs) * :per_vpc + n % :per_vpc + 1), 8, '0'),
       'eu-west-1', lpad((n % :accounts + 1)::text, 12, '0'),
       lpad((n % :accounts + 1)::text, 12, '0'),
       ARRAY[lpad((n % :accounts + 1)::text, 12, '0')],
       CASE WHEN n % 10 = 0 THEN 'nat_gateway' ELSE 'interface' END,
       CASE WHEN n % 3 = 0 THEN 'available' ELSE 'in-use' END,
       '10.0.0.0'::inet + n, jsonb_build_object('Name', 'eni-' || n),
       CASE WHEN n % 2 = 0 THEN 'i-' || lpad(to_hex(n), 8, '0') END
FROM generate_series(1, :enis) n;

INSERT INTO eni_addresses (eni_id, address, kind, is_primary)
SELECT 'eni-' || lpad(to_hex(n), 8, '0'), '10.0.0.0'::inet + n, 'private_ipv4', true
FROM generate_series(1, :enis) n;

INSERT INTO eni_addresses (eni_id, address, kind, private_address)
SELECT 'eni-' || lpad(to_hex(n), 8, '0'), '100.64.0.0'::inet + n, 'public_ipv4',
       '10.0.0.0'::inet + n
FROM generate_series(4, :enis, 4) n;

INSERT INTO eni_addresses (eni_id, address, kind)
SELECT 'eni-' || lpad(to_hex(n), 8, '0'),
       set_masklen('172.16.0.0'::inet + n * 16, 28), 'ipv4_prefix'
FROM generate_series(50, :enis, 50) n;

INSERT INTO eni_security_groups (eni_id, group_id)
SELECT 'eni-' || lpad(to_hex(n), 8, '0'), 'sg-' || lpad(to_hex(n % :vpcs + 1), 8, '0')
FROM generate_series(1, :enis) n;

INSERT INTO ec2_instances (instance_id, vpc_id, subnet_id, region, owner_account_id,
                           reported_by, seen_by, state, instance_type, private_ip)
SELECT 'i-' || lpad(to_hex(n), 8, '0'), 'vpc-' || lpad(to_hex(n % :vpcs + 1), 8, '0'),
       'subnet-' || lpad(to_hex((n % :vpcs) * :per_vpc + n % :per_vpc + 1), 8, '0'),
       'eu-west-1', lpad((n % :accounts + 1)::text, 12, '0'),
       lpad((n % :accounts + 1)::text, 12, '0'),
       ARRAY[lpad((n % :accounts + 1)::text, 12, '0')], 'running', 't3.micro',
       '10.0.0.0'::inet + n
FROM generate_series(2, :enis, 2) n;

INSERT INTO api_tokens (id, name, role, token_sha256)
VALUES (gen_random_uuid(), 'bench', 'reader', :token_sha256);
"""


async def load(database_url: str) -> None:
    import hashlib

    engine = make_engine(database_url)
    sizes = {
        "enis": ENIS,
        "vpcs": VPCS,
        "per_vpc": SUBNETS_PER_VPC,
        "accounts": ACCOUNTS,
    }
    # Sizes are our own integers, written in so PostgreSQL knows their type.
    sql = re.sub(
        r":(enis|vpcs|per_vpc|accounts)\b", lambda m: str(sizes[m[1]]), LOAD_SQL
    )
    token = {"token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
    async with engine.begin() as connection:
        for statement in sql.split(";\n"):
            if statement.strip():
                wanted = token if ":token_sha256" in statement else {}
                await connection.execute(text(statement), wanted)
    async with engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM (ANALYZE)"))
    await engine.dispose()


def ip_paths(count: int) -> list[str]:
    """Lookups of private, public and prefix addresses that exist."""
    rng = random.Random(7)
    paths = []
    for _ in range(count):
        n = rng.randint(1, ENIS)
        choice = rng.random()
        if choice < 0.6:
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        elif choice < 0.9 and ENIS >= 4:
            m = rng.randrange(4, ENIS + 1, 4)
            address = f"100.{64 + (m >> 16 & 255)}.{m >> 8 & 255}.{m & 255}"
        else:
            m = rng.randrange(50, ENIS + 1, 50) * 16 + 3 if ENIS >= 50 else n
            address = f"172.{16 + (m >> 16 & 255)}.{m >> 8 & 255}.{m & 255}"
        paths.append(f"/api/v1/ip/{address}")
    return paths


def list_paths(count: int) -> list[str]:
    """First pages of ENIs filtered by VPC and status, or by owner and type."""
    rng = random.Random(11)
    paths = []
    for _ in range(count):
        if rng.random() < 0.5:
            vpc = f"vpc-{rng.randint(1, VPCS):08x}"
            paths.append(f"/api/v1/enis?vpc_id={vpc}&status=in-use&limit=50")
        else:
            owner = f"{rng.randint(1, ACCOUNTS):012d}"
            paths.append(
                f"/api/v1/enis?owner_account_id={owner}&region=eu-west-1"
                "&interface_type=interface&limit=50"
            )
    return paths


def run_wrk(
    base_url: str, paths: list[str], connections: int, work: Path
) -> tuple[float, float, float]:
    script = work / "paths.lua"
    quoted = ",".join(json.dumps(p) for p in paths)
    script.write_text(
        f"local paths = {{{quoted}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        "  return wrk.format('GET', paths[i])\n"
        "end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('RESULT %f %f %d %d\\n', latency:percentile(50),\n"
        "    latency:percentile(99), summary.requests, summary.errors.status))\n"
        "end\n"
    )
    output = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(SECONDS))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {TOKEN}",
            base_url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"RESULT ([\d.]+) ([\d.]+) (\d+) (\d+)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    if int(found.group(4)):
        raise RuntimeError(f"{found.group(4)} answers were not 2xx:\n{output}")
    return (
        float(found.group(1)) / 1000,
        float(found.group(2)) / 1000,
        float(rps.group(1)),
    )


def python_load(
    base_url: str, paths: list[str], connections: int
) -> tuple[float, float, float]:
    """The same load from a separate Python process, when wrk is not installed."""
    argv = [sys.executable, "-m", "bench.bench_api", "load", base_url, TOKEN]
    argv += [str(SECONDS), str(connections)]
    output = subprocess.run(
        argv, input="\n".join(paths), capture_output=True, text=True, check=True
    ).stdout
    p50, p99, rps = json.loads(output.strip().splitlines()[-1])
    return p50, p99, rps


async def _drive(base_url: str, token: str, seconds: float, connections: int) -> None:
    paths = sys.stdin.read().split()
    latencies: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal failures
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            i = offset
            while time.perf_counter() < end:
                started = time.perf_counter()
                response = await client.get(paths[i % len(paths)])
                latencies.append((time.perf_counter() - started) * 1000)
                failures += response.status_code != 200
                i += connections

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} answers were not 200")
    cuts = statistics.quantiles(latencies, n=100)
    print(json.dumps([cuts[49], cuts[98], len(latencies) / elapsed]))


def serve(
    database_url: str, namespace: str, work: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": NATS_URL,
        "NATS_NAMESPACE": namespace,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "API_WORKERS": str(WORKERS),
    }
    env.pop("API_ADMIN_TOKEN", None)
    log = (work / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.api"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError((work / "api.log").read_text())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        base_url, token, seconds, connections = sys.argv[2:6]
        asyncio.run(_drive(base_url, token, float(seconds), int(connections)))
        return

    name = f"inventory_bench_{uuid.uuid4().hex[:8]}"
    database_url = asyncio.run(admin.create_database(SERVER_URL, name))
    try:
        admin.upgrade(database_url)
        started = time.perf_counter()
        asyncio.run(load(database_url))
        print(
            f"loaded {ENIS:,} ENIs in {time.perf_counter() - started:.1f} s", flush=True
        )
        _measure(database_url)
    finally:
        asyncio.run(admin.drop_database(SERVER_URL, name))


def _measure(database_url: str) -> None:
    """Each scenario at each concurrency, then where the targets hold."""
    tool = "wrk" if shutil.which("wrk") else "python"
    print(
        f"load: {tool} on 127.0.0.1, {SECONDS:g} s per run; {WORKERS} API "
        f"processes; {os.cpu_count()} cores shared by the load, the API and "
        "PostgreSQL"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        process, base_url = serve(database_url, f"bench{uuid.uuid4().hex[:8]}", work)
        try:
            scenarios = {
                "ip lookup": ip_paths(2000),
                "filtered list page": list_paths(500),
            }
            met: dict[str, list[int]] = {label: [] for label in scenarios}
            for label, paths in scenarios.items():
                _warm(base_url, paths[:20])
                for connections in CONNECTIONS:
                    if tool == "wrk":
                        p50, p99, rps = run_wrk(base_url, paths, connections, work)
                    else:
                        p50, p99, rps = python_load(base_url, paths, connections)
                    meets = p99 < TARGETS[label]
                    if meets:
                        met[label].append(connections)
                    print(
                        f"{label:20} {connections:2} conn  p50 {p50:7.2f} ms  "
                        f"p99 {p99:7.2f} ms  {rps:8.1f} req/s  "
                        f"({'meets' if meets else 'misses'} the p99 target of "
                        f"{TARGETS[label]:g} ms)",
                        flush=True,
                    )
        finally:
            process.terminate()
            process.wait(timeout=10)
    for label, levels in met.items():
        print(
            f"{label}: p99 target met at "
            f"{', '.join(map(str, levels)) or 'none'} of "
            f"{', '.join(map(str, CONNECTIONS))} connections"
        )


def _warm(base_url: str, paths: list[str]) -> None:
    """Fill the pool and the caches before measuring."""
    for path in paths:
        httpx.get(
            base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).raise_for_status()


if __name__ == "__main__":
    main()
