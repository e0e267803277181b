"""Load a local HTML file in headless Chromium and report what a user's browser would do with it.

Talks the Chrome DevTools Protocol over `--remote-debugging-pipe` (file descriptors 3 and 4,
messages separated by NUL bytes), so no websocket library or webdriver is needed. Records every
network request the page makes, console errors and exceptions, page height, how many <img> decoded,
and takes a screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    url: str
    height_px: int = 0
    images: int = 0
    images_decoded: int = 0
    findings: int = 0
    tables: int = 0
    requests: list[str] = field(default_factory=list)  # URLs fetched besides the document (data: excluded)
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.to_browser, self.from_browser = proc, to_browser, from_browser
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for i, seen in enumerate(self.events):
            if seen.get("method") == event:
                return self.events.pop(i)
        while True:
            message = self._read_message(deadline)
            if message.get("method") == event:
                return message
            self.events.append(message)


_PAGE_FACTS = """JSON.stringify({
  height: document.documentElement.scrollHeight,
  images: document.images.length,
  decoded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
  findings: document.querySelectorAll('#findings .finding').length,
  tables: document.querySelectorAll('table').length
})"""


def load_page(html_file: Path, screenshot: Path | None = None, width: int = 1200, height: int = 900,
              chromium: str | None = None) -> PageResult:
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed")
    url = Path(html_file).resolve().as_uri()
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="codecdoctor-chromium-")

    def wire_fds() -> None:  # in the child: chromium reads commands on fd 3, writes on fd 4
        # go through high numbers first, in case a pipe end already sits on 3 or 4
        read_end, write_end = 1000, 1001
        os.dup2(to_r, read_end)
        os.dup2(from_w, write_end)
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--remote-debugging-pipe", f"--user-data-dir={profile}",
         f"--window-size={width},{height}", "about:blank"],
        preexec_fn=wire_fds, close_fds=False,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(proc, to_w, from_r)
    result = PageResult(url=url)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": url}, session=session)
        pipe.wait_for("Page.loadEventFired")
        facts = json.loads(pipe.call("Runtime.evaluate", {"expression": _PAGE_FACTS, "returnByValue": True},
                                     session=session)["result"]["value"])
        result.height_px, result.images = facts["height"], facts["images"]
        result.images_decoded, result.findings, result.tables = facts["decoded"], facts["findings"], facts["tables"]
        if screenshot is not None:
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                             session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                requested = params.get("request", {}).get("url", "")
                # data: URIs are decoded in place, not fetched; anything else is a request
                if requested != url and not requested.startswith("data:"):
                    result.requests.append(requested)
            elif method == "Runtime.exceptionThrown":
                result.console_errors.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                result.console_errors.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                result.console_errors.append(str(params["entry"].get("text")))
        try:
            pipe.call("Browser.close", timeout=5)
        except Exception:
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_w)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)
    return result
