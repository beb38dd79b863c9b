"""Drive headless Chromium over the DevTools protocol, stdlib only: open a report, run
JavaScript in it, click, take screenshots. Used by the tests, ``bench/report.py`` and to make the
README's screenshot; the report itself never needs it.

Transport: ``--remote-debugging-pipe`` (Chromium reads commands on fd 3 and writes replies on
fd 4, each a JSON message ended by a NUL byte), so no port is opened and no websocket library is
needed. One page target, attached with ``flatten``; messages for it carry its ``sessionId``.

    with Chromium() as browser:
        with browser.open("file:///.../index.html", wait="document.body.dataset.ready === '1'") as page:
            n = page.js("document.querySelectorAll('article.q').length")
            page.screenshot("shot.png")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


# Resolves once every image inside the viewport has loaded (or failed), or after 10 s. Lazy images
# outside it (below, or scrolled away in a frame strip) are not waited for: they never load.
IMAGES_IN_VIEW_LOADED = """Promise.race([new Promise(ok => setTimeout(ok, 10000)), Promise.all([...document.images]
  .filter(i => { const r = i.getBoundingClientRect();
                 return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth; })
  .map(i => i.complete ? 0 : new Promise(ok => { i.addEventListener('load', ok); i.addEventListener('error', ok); })))])"""


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    env = os.environ.get("SPACEMIND_CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab; `with browser.open(url) as page:` closes it when the block ends, however it ends."""

    def __init__(self, browser: Chromium, session: str, target: str):
        self.browser = browser
        self.session = session
        self.target = target

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def requests(self) -> list[str]:
        """URLs this page has requested so far (the Network domain's requestWillBeSent events)."""
        self.js("0")  # drain the events that arrived before now
        return list(self.browser.requests.get(self.session, []))

    def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def js(self, expression: str, timeout: float = 30.0) -> Any:
        """Evaluate an expression (promises awaited) and return its JSON value."""
        reply = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in reply:
            d = reply["exceptionDetails"]
            text = (d.get("exception") or {}).get("description") or d.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return reply.get("result", {}).get("value")

    def wait(self, condition: str, timeout: float = 20.0) -> None:
        """Poll a JavaScript condition until it is true (the page's own ready flags)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.js(f"!!({condition})"):
                    return
            except BrowserError:
                pass  # the document may not exist yet
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for: {condition}")
            time.sleep(0.05)

    def set_value(self, selector: str, value: str) -> None:
        """Set a control as a user would, firing the event the page listens to."""
        self.js(
            "(() => { const el = document.querySelector(%s); if (!el) throw new Error('no ' + %s);"  # noqa: UP031 (JS braces stay single)
            " el.value = %s; el.dispatchEvent(new Event(el.tagName === 'INPUT' ? 'input' : 'change', {bubbles: true}));"
            " return el.value; })()" % (json.dumps(selector), json.dumps(selector), json.dumps(value))
        )

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (scrolled into view first)."""
        box = self.js(
            "(() => { const el = document.querySelector(%s); if (!el) return null; el.scrollIntoView({block: 'center'});"  # noqa: UP031 (JS braces stay single)
            " const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
            % json.dumps(selector)
        )
        if not box:
            raise BrowserError(f"nothing to click at {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def screenshot(self, path: str | Path, full_page: bool = False, clip: dict | None = None) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if clip or full_page:
            if clip is None:
                w, h = self.js("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
                clip = {"x": 0, "y": 0, "width": w, "height": h}
            params["clip"] = {**clip, "scale": clip.get("scale", 1)}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("no Chromium found (apt-get install chromium, or set SPACEMIND_CHROMIUM)")
        self.size = (width, height)
        self.proc: subprocess.Popen | None = None
        self._profile = None
        self._next = 0
        self._buf = b""
        self.requests: dict[str, list[str]] = {}  # session -> URLs requested

    # -- process ----------------------------------------------------------------------------
    def start(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="spacemind-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4. bash moves the pipe ends
        # there just before exec'ing it, so no Python runs in the forked child (preexec_fn is
        # unsafe in threaded programs). The ends are first moved above 9 so that neither is 3 or 4.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        self._to_child, self._from_child = to_child_w, from_child_r
        move = f'exec "$0" "$@" 3<&{high[0]} 4>&{high[1]} {high[0]}<&- {high[1]}>&-'
        args = [shutil.which("bash") or "/bin/bash", "-c", move, self.executable, *FLAGS,
                f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
                f"--window-size={self.size[0]},{self.size[1]}", "about:blank"]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=high
            )
        finally:
            for fd in high:
                os.close(fd)
        return self

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.send("Browser.close", timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol ---------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:
                n = os.write(self._to_child, data)
                data = data[n:]
        except OSError as exc:
            code = self.proc.poll() if self.proc is not None else None
            raise BrowserError(f"Chromium is not running (exit code {code}): {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("method") == "Network.requestWillBeSent":
                url = reply["params"]["request"]["url"]
                self.requests.setdefault(reply.get("sessionId", ""), []).append(url)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium exited")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, url: str, wait: str | None = None, timeout: float = 30.0) -> Page:
        """A new tab on `url` (once `wait` holds, when given); use it as `with browser.open(...) as
        page:`. A tab that fails to open or to get ready is closed again."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        try:
            session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            page = Page(self, session, target)
            page.send("Page.enable")
            page.send("Runtime.enable")
            page.send("Network.enable")
            page.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False},
            )
            page.send("Page.navigate", {"url": url})
            if wait:
                page.wait(wait, timeout=timeout)
        except BaseException:
            try:
                self.send("Target.closeTarget", {"targetId": target}, timeout=5)
            except (BrowserError, OSError):
                pass  # Chromium is gone: nothing left to close, and the first error is the one to see
            raise
        return page


def main(argv: list[str] | None = None) -> int:
    """python -m bench.browser REPORT_DIR OUT.png [--clip SELECTOR ...]: a screenshot
    of a built report; with --clip, the listed parts (each at most --max-height px tall) stacked
    into one image. The README's screenshot is made this way."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--hash", default="", help="view state, e.g. 'res=wrong' or 'q-12'")
    ap.add_argument("--clip", action="append", default=[],
                    help="CSS selector of a part to keep, or A~B for A's top to B's bottom (repeatable)")
    ap.add_argument("--max-height", type=int, default=700, help="tallest part kept per --clip")
    ap.add_argument("--colors", type=int, default=0, help="quantize to this many colours (smaller PNG)")
    args = ap.parse_args(argv)
    url = (args.report / "index.html").resolve().as_uri() + (f"#{args.hash}" if args.hash else "")
    shots: list[Path] = []
    with (
        Chromium(width=args.width, height=args.height) as browser,
        browser.open(url, wait="document.body && document.body.dataset.ready === '1'") as page,
    ):
        if not args.clip:
            page.js(IMAGES_IN_VIEW_LOADED)
            shots.append(page.screenshot(args.out))
        for i, selector in enumerate(args.clip):
            first, _, last = selector.partition("~")
            page.js(f"document.querySelector({json.dumps(first)}).scrollIntoView({{block: 'start'}})")
            page.js(IMAGES_IN_VIEW_LOADED)
            top, bottom = page.js(
                f"(() => {{ const a = document.querySelector({json.dumps(first)}).getBoundingClientRect(),"
                f" b = document.querySelector({json.dumps(last or first)}).getBoundingClientRect();"
                " return [a.top + scrollY, b.bottom + scrollY]; })()"
            )
            clip = {"x": 0, "y": top, "width": args.width, "height": min(bottom - top, args.max_height)}
            shots.append(page.screenshot(args.out.with_name(f".{args.out.stem}.{i}.png"), clip=clip))
    if args.clip or args.colors:
        from PIL import Image

        parts = [Image.open(p).convert("RGB") for p in shots]
        sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
        y = 0
        for part in parts:
            sheet.paste(part, (0, y))
            y += part.height
        if args.colors:
            sheet = sheet.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        sheet.save(args.out, optimize=True)
        for p in shots:
            if p != args.out:
                p.unlink()
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
