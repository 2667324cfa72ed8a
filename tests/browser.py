"""Headless Chromium driven over the DevTools protocol through a pipe (no extra packages).

``open_page(path)`` loads a local file, waits for it (and optionally for a JavaScript
condition), and returns what a person would notice: console errors, uncaught exceptions,
every network request the page made, and a screenshot.

Chromium comes from Debian's ``chromium`` package; ``.ci/run`` installs it when it is missing.
On a developer machine without it the browser tests skip; in CI (``CI=true``) they fail.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
# software WebGL (SwiftShader) so a machine without a GPU or display draws the scene
FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader", "--use-gl=angle",
         "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-pipe")


def in_ci() -> bool:
    """True in CI (``CI=true``), where these tests must run rather than skip."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def skip_or_fail(reason: str) -> None:
    """Skip the test on a developer's machine; fail it in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI must run this test: .ci/run and the test extra install what "
                    "it needs)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str):
    """Import ``name``, or skip (fail in CI)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(f"{name} is not installed (pip install -e '.[test]')")


def chromium() -> str:
    """The Chromium executable; skips the test without one, except in CI where it fails."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    skip_or_fail("headless Chromium is not installed (apt-get install chromium); the browser "
                 "tests run in CI")


@dataclasses.dataclass
class PageResult:
    """What a page did while it loaded.

    Attributes:
        errors: console errors, failed loads and uncaught exceptions, one line each.
        requests: URLs of every request the page (and its frames) made.
        screenshot: the page as an (H, W, 3) uint8 array.
        values: results of the ``evaluate`` expressions, by expression.
        seconds: from navigation to the ready condition.
        dragged: the page after a mouse drag (``drag``), else None.
        values_dragged: the ``evaluate`` expressions after the drag.
    """

    errors: list[str]
    requests: list[str]
    screenshot: np.ndarray
    values: dict[str, Any]
    seconds: float
    dragged: np.ndarray | None = None
    values_dragged: dict[str, Any] | None = None

    @property
    def remote_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file:, data:, blob:)."""
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]


class _Pipe:
    """Chromium's DevTools pipe: JSON messages ending in NUL, on its file descriptors 3/4."""

    def __init__(self, exe: str, width: int, height: int, profile: str, log):
        # fd 3 is what Chromium reads, fd 4 what it writes: our stdin/stdout pipes moved there
        cmd = ["sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', "sh", exe, *FLAGS,
               f"--window-size={width},{height}", f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log)
        self.messages: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self.proc.stdout.read1(1 << 16)
            if not chunk:
                self.messages.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                self.messages.put(json.loads(raw))

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             events: list | None = None, timeout: float = 60.0) -> dict:
        """Send one command and wait for its answer; events that arrive meanwhile go to
        ``events``."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            reply = self.get(deadline, f"{method} (no answer)")
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if events is not None and "method" in reply:
                events.append(reply)

    def get(self, deadline: float, what: str) -> dict:
        try:
            reply = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(what) from None
        if reply is None:
            raise RuntimeError(f"Chromium exited while waiting for {what}")
        return reply

    def drain(self, events: list, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reply = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return
            if reply is None:
                return
            if "method" in reply:
                events.append(reply)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _event_errors(events: list[dict]) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in
                            params.get("args", []))
            errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {}).get("description", "")
            errors.append(f"uncaught: {details.get('text', '')} {exc}".strip())
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} "
                          f"{entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            requests.append(params.get("request", {}).get("url", ""))
        elif method == "Network.loadingFailed":
            errors.append(f"failed to load: {params.get('errorText', '')}")
    return errors, requests


def _screenshot(pipe: _Pipe, session: str, events: list) -> np.ndarray:
    from PIL import Image

    shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session,
                     events=events)
    with Image.open(io.BytesIO(base64.b64decode(shot["data"]))) as im:
        return np.asarray(im.convert("RGB"))


def _evaluate(pipe: _Pipe, session: str, events: list, expressions) -> dict[str, Any]:
    values = {}
    for expression in expressions:
        got = pipe.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                        session=session, events=events)
        values[expression] = got.get("result", {}).get("value")
    return values


def _drag(pipe: _Pipe, session: str, events: list, start, end, steps: int = 12) -> None:
    """Press the left button at ``start``, move to ``end`` in steps, release."""
    def mouse(kind, x, y, buttons):
        params = {"type": kind, "x": float(x), "y": float(y), "button": "left",
                  "buttons": buttons, "clickCount": 1}
        if kind == "mouseMoved":
            params["button"] = "left" if buttons else "none"
        pipe.send("Input.dispatchMouseEvent", params, session=session, events=events)

    mouse("mouseMoved", *start, 0)
    mouse("mousePressed", *start, 1)
    for k in range(1, steps + 1):
        t = k / steps
        mouse("mouseMoved", start[0] + t * (end[0] - start[0]),
              start[1] + t * (end[1] - start[1]), 1)
        pipe.drain(events, 0.03)
    mouse("mouseReleased", *end, 0)


def open_page(path: str | os.PathLike, *, width: int = 1280, height: int = 720,
              ready: str | None = None, evaluate: tuple[str, ...] = (),
              drag: tuple[tuple[float, float], tuple[float, float]] | None = None,
              timeout: float = 90.0, settle: float = 1.0) -> PageResult:
    """Open a local file in headless Chromium and report what happened.

    Args:
        path: the page.
        width, height: the viewport in pixels.
        ready: a JavaScript expression that becomes true when the page is drawn (polled).
        evaluate: expressions whose values (JSON) to return, read once the page is ready
            (and again after the drag).
        drag: ``((x0, y0), (x1, y1))``: after the first screenshot, drag the mouse with the
            left button held from the first point to the second, then take another.
        timeout: seconds to wait for the load and the ready condition.
        settle: seconds to keep listening after it is ready (late errors, late requests).

    Returns:
        PageResult.
    """
    exe = chromium()
    url = Path(path).resolve().as_uri()
    events: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="landscape-chromium-") as profile, \
            tempfile.TemporaryFile() as log:
        pipe = _Pipe(exe, width, height, profile, log)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target,
                                                          "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session, events=events)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1,
                       "mobile": False}, session=session, events=events)
            start = time.monotonic()
            pipe.send("Page.navigate", {"url": url}, session=session, events=events)
            deadline = start + timeout
            while not any(e["method"] == "Page.loadEventFired" for e in events):
                reply = pipe.get(deadline, f"the load event of {url}")
                if "method" in reply:
                    events.append(reply)
            if ready:
                while True:
                    got = pipe.send("Runtime.evaluate", {"expression": f"!!({ready})",
                                                         "returnByValue": True},
                                    session=session, events=events)
                    if got.get("result", {}).get("value"):
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{url}: {ready} still false after {timeout:.0f} s;"
                                           f" errors: {_event_errors(events)[0]}")
                    pipe.drain(events, 0.2)
            seconds = time.monotonic() - start
            pipe.drain(events, settle)
            values = _evaluate(pipe, session, events, evaluate)
            image = _screenshot(pipe, session, events)
            dragged = values_dragged = None
            if drag:
                _drag(pipe, session, events, *drag)
                pipe.drain(events, settle)
                values_dragged = _evaluate(pipe, session, events, evaluate)
                dragged = _screenshot(pipe, session, events)
        except Exception as exc:
            log.seek(0)
            tail = log.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"{exc}\n--- chromium's log (end) ---\n{tail}") from exc
        finally:
            pipe.close()
    errors, requests = _event_errors(events)
    return PageResult(errors, requests, image, values, seconds, dragged, values_dragged)


def colours(image: np.ndarray) -> int:
    """Number of distinct colours in an image (a blank or flat canvas has a handful)."""
    return len(np.unique(image.reshape(-1, image.shape[-1]), axis=0))
