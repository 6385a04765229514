"""Open a page in headless Chromium and report what a person would see go wrong.

:func:`check_report_in_browser` loads a file (normally a run's ``report.html``) in a fresh,
headless Chromium and returns a :class:`BrowserResult`: the console errors (``console.error``
and ``console.assert`` calls, uncaught exceptions, resources that failed to load) and, for
every ``<img>``, whether it decoded to a picture with a non-zero size.

The browser is driven through the Chrome DevTools protocol over ``--remote-debugging-pipe``
(null-terminated JSON messages on file descriptors 3 and 4), so no WebSocket client or other
dependency is needed. Chromium's own log on stderr is not parsed: its format and levels
change between versions (both ``console.error`` and uncaught exceptions are logged as INFO),
whereas the protocol says which message is an error.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visum.atomic import write_bytes_atomic
from visum.errors import InputError

__all__ = ["CHROMIUM_FLAGS", "BrowserError", "BrowserResult", "ImageStatus", "check_report_in_browser", "find_chromium"]

#: The flags every launch uses (CI runs as root, without a GPU or a session bus).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm, too small for Chromium
)

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")

#: Evaluated in the page once it has loaded: every image, decoded or not.
_IMAGES_JS = """
Promise.all(Array.from(document.images, img =>
  img.decode().then(() => true, () => false).then(decoded => ({
    src: img.getAttribute('src') || '',
    alt: img.getAttribute('alt') || '',
    summary: img.closest('section.summary') !== null,
    loaded: decoded && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0,
    width: img.naturalWidth,
    height: img.naturalHeight,
  }))))
"""


class BrowserError(RuntimeError):
    """Chromium could not be started, crashed, or did not answer in time."""


@dataclass(frozen=True)
class ImageStatus:
    """One ``<img>`` of the page after loading."""

    src: str  #: the ``src`` attribute, shortened for data URIs
    alt: str
    summary: bool  #: inside a ``section.summary`` of the report
    loaded: bool  #: decoded, with a non-zero natural size
    width: int
    height: int


@dataclass(frozen=True)
class BrowserResult:
    """What the browser saw while loading one page."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    images: list[ImageStatus] = field(default_factory=list)
    title: str = ""

    @property
    def broken_images(self) -> list[ImageStatus]:
        return [im for im in self.images if not im.loaded]

    @property
    def summary_images(self) -> list[ImageStatus]:
        return [im for im in self.images if im.summary]

    @property
    def ok(self) -> bool:
        """No console error and every image loaded."""
        return not self.console_errors and not self.broken_images

    def describe(self) -> str:
        """A few lines saying what went wrong (or that nothing did)."""
        head = (f"{self.url}: {len(self.images)} images, {len(self.broken_images)} broken, "
                f"{len(self.console_errors)} console errors")
        lines = [head]
        lines += [f"  console: {e}" for e in self.console_errors]
        lines += [f"  image not loaded: {im.src} ({im.alt})" for im in self.broken_images]
        return "\n".join(lines)


def find_chromium() -> str | None:
    """``$VISUM_CHROMIUM`` if set, else the first Chromium or Chrome on ``PATH``, else ``None``."""
    explicit = os.environ.get("VISUM_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _short(src: str) -> str:
    return src[:40] + "..." if src.startswith("data:") and len(src) > 40 else src


def _console_text(params: dict[str, Any]) -> str:
    parts = []
    for arg in params.get("args", []):
        if "value" in arg:
            parts.append(str(arg["value"]))
        else:
            parts.append(arg.get("description") or arg.get("type", "?"))
    return " ".join(parts) or params.get("type", "")


def _exception_text(params: dict[str, Any]) -> str:
    details = params.get("exceptionDetails", {})
    exc = details.get("exception") or {}
    text = exc.get("description") or details.get("text", "exception")
    return text.splitlines()[0] if text else "exception"


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or above (so that moving it to 3 or 4 cannot clash); closes ``fd``."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _Pipe:
    """The DevTools protocol over Chromium's ``--remote-debugging-pipe``."""

    def __init__(self, argv: list[str], deadline: float) -> None:
        self.deadline = deadline
        # Chromium's chatter goes to a file (a pipe could fill up and block it); close() closes it.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        to_child_r, to_child_w = (_high_fd(fd) for fd in os.pipe())
        from_child_r, from_child_w = (_high_fd(fd) for fd in os.pipe())
        devnull = _high_fd(os.open(os.devnull, os.O_RDWR))
        # Chromium reads commands on fd 3 and writes answers on fd 4. posix_spawn moves them
        # there (a shell cannot: dash only knows descriptors 0-9); its own session, so that
        # Chromium and its helper processes can be killed together.
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, self.log.fileno(), 2),
            (os.POSIX_SPAWN_DUP2, to_child_r, 3),
            (os.POSIX_SPAWN_DUP2, from_child_w, 4),
        ]
        try:
            self.pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)
        except OSError as exc:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            self.log.close()
            raise BrowserError(f"cannot start {argv[0]}: {exc}") from exc
        finally:
            for fd in (to_child_r, from_child_w, devnull):
                os.close(fd)
        self.returncode: int | None = None
        self.write_fd, self.read_fd = to_child_w, from_child_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError as exc:
            raise BrowserError(f"Chromium exited before {method}: {self.stderr_tail()}") from exc
        while True:
            reply = self._read_one()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error'].get('message', reply['error'])}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            event = self._read_one()
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next ``seconds``."""
        end = min(time.monotonic() + seconds, self.deadline)
        while True:
            try:
                self.events.append(self._read_one(end))
            except BrowserError:
                return

    def _read_one(self, until: float | None = None) -> dict[str, Any]:
        until = self.deadline if until is None else until
        while b"\0" not in self.buffer:
            left = until - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the DevTools pipe: {self.stderr_tail()}")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def stderr_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        status = "running" if self.poll() is None else f"exit status {self.returncode}"
        return " | ".join([status, *lines[-3:]])

    def close(self) -> None:
        for fd in (self.write_fd, self.read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        end = time.monotonic() + 5  # closing fd 3 makes Chromium quit
        while self.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        if self.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)  # its own session: Chromium and its helpers
            os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGKILL
        self.log.close()


def check_report_in_browser(
    path: str | os.PathLike,
    *,
    chromium: str | None = None,
    timeout: float = 60.0,
    window: tuple[int, int] = (1280, 1600),
    screenshot: str | os.PathLike | None = None,
    settle: float = 0.3,
) -> BrowserResult:
    """Load ``path`` in headless Chromium; return its console errors and the state of its images.

    The page is loaded from ``file://`` in a throw-away profile, in a ``window`` (width,
    height) viewport. After the ``load`` event every image is asked to decode, and console
    events arriving within ``settle`` seconds more are still collected. With ``screenshot``,
    the first ``window`` of the page is saved there as a PNG. Raises :class:`InputError` if
    ``path`` is not a file and :class:`BrowserError` if no Chromium is found, it cannot be
    started, or the whole check takes longer than ``timeout`` seconds.
    """
    page = Path(path).resolve()
    if not page.is_file():
        raise InputError(f"{page}: no such file to open in the browser")
    exe = chromium or find_chromium()
    if exe is None:
        raise BrowserError(
            "no Chromium found (tried $VISUM_CHROMIUM, " + ", ".join(_CANDIDATES) + "); "
            "on Debian: apt-get install chromium"
        )
    url = page.as_uri()
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="visum-chromium-") as profile:
        argv = [exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}", "--hide-scrollbars", "--mute-audio"]
        pipe = _Pipe(argv, deadline)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False},
                      session=session)
            nav = pipe.send("Page.navigate", {"url": url}, session=session)
            if nav.get("errorText"):
                raise BrowserError(f"{url}: {nav['errorText']}")
            pipe.wait_for("Page.loadEventFired", session)
            evaluated = pipe.send("Runtime.evaluate",
                                  {"expression": _IMAGES_JS, "awaitPromise": True, "returnByValue": True},
                                  session=session)
            if "exceptionDetails" in evaluated:
                raise BrowserError(f"cannot inspect the images of {url}: {_exception_text(evaluated)}")
            title = pipe.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                              session=session)["result"].get("value", "")
            pipe.drain(settle)
            if screenshot is not None:
                shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
                write_bytes_atomic(screenshot, base64.b64decode(shot["data"]))
            try:
                pipe.send("Browser.close")
            except BrowserError:
                pass  # it may close the pipe before answering
        finally:
            pipe.close()

    errors = []
    for event in pipe.events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(f"console.{params['type']}: {_console_text(params)}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"uncaught: {_exception_text(params)}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")
    images = [
        ImageStatus(src=_short(im["src"]), alt=im["alt"], summary=bool(im["summary"]), loaded=bool(im["loaded"]),
                    width=int(im["width"]), height=int(im["height"]))
        for im in evaluated["result"].get("value", [])
    ]
    return BrowserResult(url=url, console_errors=errors, images=images, title=str(title))
