"""The four services as child processes: start, watch, stop them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SERVICES = ("reconciler", "scheduler", "poller", "api")
STOP_TIMEOUT_SECONDS = 15.0


def describe_exit(code: int | None) -> str:
    """How a service ended, as a person reads it.

    Servers such as uvicorn shut down cleanly on SIGTERM and then end by that
    same signal, so -SIGTERM after a stop request is a clean stop.
    """
    if code in (0, -signal.SIGTERM, -signal.SIGINT):
        return "stopped"
    if code == -signal.SIGKILL:
        return "killed"
    if code is None:
        return "still running"
    return f"exit {code}" if code > 0 else f"signal {-code}"


class ServiceExited(RuntimeError):
    """A service stopped while it should have been running."""


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes] | None = None


@dataclass
class ServiceGroup:
    """Starts `python -m services.<name>` processes and stops them together."""

    env: Mapping[str, str]
    log_dir: Path | None = None
    cwd: Path | None = None
    running: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(
        self,
        name: str,
        extra_env: Mapping[str, str] | None = None,
        module: str | None = None,
    ) -> None:
        """Start `services.<module or name>` as `name`; logs to `log_dir/<name>.log`."""
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{module or name}"],
            env={**os.environ, **self.env, **(extra_env or {})},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            # Ctrl-C reaches only the parent, which stops the services in order.
            start_new_session=True,
        )
        self.running[name] = ServiceProcess(name, process, log)

    def start_all(self, names: tuple[str, ...] = SERVICES) -> None:
        for name in names:
            self.start(name)

    def exited(self) -> list[tuple[str, int]]:
        """The services that have stopped on their own, with their exit codes."""
        return [
            (name, code)
            for name, service in self.running.items()
            if (code := service.process.poll()) is not None
        ]

    def raise_if_exited(self) -> None:
        """Raise when a service has stopped on its own (it should not have)."""
        if exited := self.exited():
            described = ", ".join(f"{name} (exit {code})" for name, code in exited)
            where = f"; see {self.log_dir}" if self.log_dir else ""
            raise ServiceExited(f"stopped on their own: {described}{where}")

    def kill(self, name: str) -> None:
        """Kill one service at once (SIGKILL), as a crash would."""
        service = self.running.pop(name)
        service.process.kill()
        service.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if service.log:
            service.log.close()

    def stop(self, name: str) -> int | None:
        """Ask one service to stop (SIGTERM), then kill it if it lingers."""
        service = self.running.pop(name)
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
        try:
            code = service.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            service.process.kill()
            code = service.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if service.log:
            service.log.close()
        return code

    def stop_all(self) -> dict[str, int | None]:
        """Stop every service: all get SIGTERM first, so they drain in parallel."""
        for service in self.running.values():
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        return {name: self.stop(name) for name in list(self.running)}

    def wait_any(self, timeout: float | None = None) -> list[tuple[str, int]]:
        """Block until a service exits (or `timeout` passes); returns the exited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (exited := self.exited()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return exited
