"""Headless Chromium driven over the DevTools protocol, to see pages as people do."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


class Page:
    """One tab: navigate, read what is shown, type into forms."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._socket.send(
            json.dumps({"id": call_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(await self._socket.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True
        )
        return result["result"].get("value")

    async def open(self, url: str) -> str:
        """Go to `url`, wait until it has loaded, and return the text shown."""
        await self.evaluate("window.__left = true")
        await self.send("Page.navigate", url=url)
        return await self.arrived()

    async def submit(self, selector: str, **fields: str) -> str:
        """Fill a form's fields and send it; the text of the page it leads to."""
        fill = "".join(
            f"form.querySelector('[name={name}]').value = {json.dumps(value)};"
            for name, value in fields.items()
        )
        await self.evaluate(
            f"window.__left = true; const form = document.querySelector("
            f"{json.dumps(selector)}); {fill} form.submit();"
        )
        return await self.arrived()

    async def arrived(self, within: float = 20) -> str:
        """Wait until a new document has loaded; the text it shows."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready = await self.evaluate(
                "!window.__left && document.readyState === 'complete'"
            )
            if ready:
                return str(await self.evaluate("document.body.innerText"))
            await asyncio.sleep(0.1)
        raise TimeoutError("the page did not load")

    async def path(self) -> str:
        return str(await self.evaluate("location.pathname"))


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium with its own profile; yields its first tab."""
    process, port = await asyncio.to_thread(_launch, profile)
    try:
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()


def _launch(profile: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start Chromium and wait for the DevTools port it writes into its profile."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium")
    profile.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode}")
        if marker.exists() and marker.read_text().strip():
            return process, int(marker.read_text().split()[0])
        time.sleep(0.1)
    process.kill()
    raise TimeoutError("chromium did not open its DevTools port")
