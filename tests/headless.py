"""Headless Chromium for the report's browser tests, driven over the DevTools protocol on a pipe.

    with Browser(tmp_path) as browser:
        visit = browser.open(path / "index.html")     # waits for the load event
        visit.errors                                 # console errors, uncaught exceptions, failed loads
        browser.evaluate("document.title"); browser.screenshot()   # PNG bytes

Chromium is Debian's `chromium` package (scripts/install installs it). `--remote-debugging-pipe` makes Chromium
read protocol messages from fd 3 and write them to fd 4, each JSON text ending in a NUL byte: no port, no network.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
TIMEOUT = 60.0


def chromium() -> str:
    """The chromium binary; the test fails (never skips) without it, saying how to install it."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: the report's browser test needs Debian's chromium package "
                    "(scripts/install installs it; as root: apt-get install --no-install-recommends chromium).")
    return found


@dataclass
class Visit:
    url: str
    errors: list[str] = field(default_factory=list)


class Browser:
    def __init__(self, workdir: Path, width: int = 1400, height: int = 1000):
        self.workdir = workdir
        self.size = (width, height)
        self._id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def descriptors() -> None:  # in the child: its fd 3 reads our messages, its fd 4 writes its own
            # Through descriptors above 9 first, in case one pipe end is itself fd 3 or 4.
            reading, writing = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write))
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        profile = self.workdir / "chromium-profile"
        self.process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={self.size[0]},{self.size[1]}",
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=descriptors,  # kept open in the child after preexec_fn set them
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self._call(f"{domain}.enable", session=True)
        self._call("Emulation.setDeviceMetricsOverride", {"width": self.size[0], "height": self.size[1],
                                                           "deviceScaleFactor": 1, "mobile": False}, session=True)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._call("Browser.close")
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)

    def open(self, path: Path) -> Visit:
        """Load a file and wait for its load event (and a moment for scripts); the visit lists every console
        error, uncaught exception and failed resource of the page."""
        self._events.clear()
        visit = Visit(path.resolve().as_uri())
        self._call("Page.navigate", {"url": visit.url}, session=True)
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            self._events.append(self._receive(deadline))
        self.evaluate("new Promise(function (done) { setTimeout(done, 200); })")
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                visit.errors.append(f"{details.get('text')} {details.get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                visit.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                            for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                visit.errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        return visit

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                 "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        shot = self._call("Page.captureScreenshot", {"format": "png"}, session=True)
        return base64.b64decode(shot["data"])

    def _call(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._read], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)
