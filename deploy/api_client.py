"""A small blocking client of the inventory API (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.estate import ACCOUNTS, ROLE_NAME

FINISHED = {
    "succeeded",
    "partially_failed",
    "failed",
    "skipped",
    "cancelled",
    "superseded",
}


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"API answered {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class ApiClient:
    base_url: str
    token: str
    timeout: float = 15.0

    def request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url.rstrip("/") + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def wait_ready(
        self, timeout: float, abort: Callable[[], None] | None = None
    ) -> None:
        """Wait until `/readyz` answers 200; `abort` may raise to give up early."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if abort is not None:
                abort()
            try:
                self.request("GET", "/readyz")
                return
            except (OSError, ApiError) as error:
                last = error
            time.sleep(0.3)
        raise TimeoutError(f"the API was not ready after {timeout} s: {last}")

    def register_sample_accounts(self) -> list[str]:
        """Create the sample accounts; one that exists already is left as it is."""
        created = []
        for account in ACCOUNTS:
            spec = {
                "account_id": account.account_id,
                "account_name": account.account_name,
                "auth_method": "instance_role",
                "is_active": True,
                "default_role_name": ROLE_NAME,
                "default_regions": list(account.regions),
            }
            try:
                self.request("POST", "/api/v1/accounts", spec)
            except ApiError as error:
                if error.status != 409:
                    raise
            else:
                created.append(account.account_id)
        return created

    def start_cycle(self) -> str:
        task_id: str = self.request("POST", "/api/v1/polls")["task_id"]
        return task_id

    def wait_for_task(
        self,
        task_id: str,
        timeout: float,
        abort: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Poll `/tasks/{id}` until the task finishes; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if abort is not None:
                abort()
            try:
                task: dict[str, Any] = self.request("GET", f"/api/v1/tasks/{task_id}")
            except ApiError as error:
                if error.status != 404:  # not recorded by the reconciler yet
                    raise
            else:
                if task["status"] in FINISHED:
                    return task
            time.sleep(0.5)
        raise TimeoutError(f"task {task_id} did not finish within {timeout} s")

    def count(self, path: str) -> int:
        """How many items a list endpoint has, following every page."""
        total, cursor = 0, None
        while True:
            query = "?" + urllib.parse.urlencode(
                {"limit": 500, **({"cursor": cursor} if cursor else {})}
            )
            page = self.request("GET", f"/api/v1/{path}{query}")
            total += len(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return total
