"""The local AWS stand-in: moto's server in this process, with the sample estate.

`python -m deploy.standin --host 0.0.0.0 --port 5000` serves it until stopped
(the compose `demo` profile runs it so).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from deploy.estate import Estate, seed_estate


@contextlib.contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's server in a thread of this process; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    reachable = "127.0.0.1" if bound_host in ("0.0.0.0", "") else bound_host
    try:
        yield f"http://{reachable}:{bound_port}"
    finally:
        server.stop()


@contextlib.contextmanager
def standin(host: str = "127.0.0.1", port: int = 0) -> Iterator[Estate]:
    """moto's server with the sample estate built in it."""
    with moto_server(host, port) as url:
        yield seed_estate(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    with standin(args.host, args.port) as estate:
        print(
            f"AWS stand-in at {estate.endpoint_url}: {len(estate.vpcs)} VPCs, "
            f"{len(estate.enis)} ENIs, {len(estate.instances)} instances seeded",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
