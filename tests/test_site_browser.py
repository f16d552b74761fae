"""The built site in a real browser: headless Chromium loads a leaderboard page and reports
that its table is there, that its Pareto picture decoded (``naturalWidth > 0``) and that
MathJax typeset the equations (issue 10, acceptance: "a real browser, not an HTML parse").

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-terminated JSON on file descriptors 3 and 4), so no client library is needed.
Without Debian's ``chromium`` the test is skipped: ``apt-get install -y chromium``.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, tiny_grid

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """A headless Chromium page driven over ``--remote-debugging-pipe``."""

    def __init__(self, width: int = 1920, height: int = 1080):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # the child reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
             "--no-first-run", "--hide-scrollbars", f"--window-size={width},{height}", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id, self._buffer = 0, b""
        target = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in target if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: bool = False, **params) -> dict:
        """Send one command and wait for its reply (events in between are dropped)."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str, until: str, timeout: float = 60) -> None:
        """Load ``url`` and wait until the JavaScript ``until`` is true."""
        self.send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"document.readyState === 'complete' && ({until})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: {until} still false after {timeout} s")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page at the window's width."""
        import base64

        height = self.evaluate("document.documentElement.scrollHeight")
        data = self.send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": self.evaluate("window.innerWidth"), "height": height,
                               "scale": 1})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def serve():
    """Serve a directory over HTTP on a free local port; yields ``serve(dir) -> base URL``."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_leaderboard_page_in_chromium(tmp_path, serve):
    runs = tmp_path / "runs"
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(methods=["none", "kd"])))
    assert run_cli("run", "--grid", str(grid), "--out", str(runs)).returncode == 0
    run = runs / "tiny" / "paper"
    site = tmp_path / "site"
    built = run_cli("docs", "build", str(run), "--site-dir", str(site))
    assert built.returncode == 0, built.stderr[-3000:]
    pictures = sorted(p.name for p in (run / "pictures").glob("*.png"))
    for name in pictures:  # every picture is published beside its page, byte for byte
        assert (site / "results" / "tiny-paper" / "pictures" / name).read_bytes() == (run / "pictures" / name).read_bytes()

    base = serve(site)
    browser = Browser()
    try:
        browser.open(base + "results/tiny-paper/", until="document.querySelector('article table') !== null")
        table = browser.evaluate("""(() => {
            const t = document.querySelector('article table');
            const heads = [...t.querySelectorAll('th')].map(th => th.textContent.trim());
            const rows = [...t.querySelectorAll('tbody tr')].map(tr => tr.cells[0].textContent.trim());
            const box = t.getBoundingClientRect();
            return {heads, rows, right: box.right, scroll: t.scrollWidth, client: t.clientWidth,
                    width: window.innerWidth};
        })()""")
        assert any("Dice" in h for h in table["heads"]) and any("Params" in h for h in table["heads"]), table["heads"]
        assert any("kd" in r for r in table["rows"]) and any("none" in r for r in table["rows"]), table["rows"]
        # nothing cut off: the table ends inside the window, or scrolls within itself
        assert table["right"] <= table["width"] or table["scroll"] > table["client"], table

        browser.open(base + "concepts/", until="document.querySelector('mjx-container svg') !== null")
        math = browser.evaluate("[...document.querySelectorAll('.arithmatex')].map("
                                "a => a.querySelector('mjx-container svg') !== null)")
        assert math and all(math), math  # MathJax (vendored: no network) typeset every equation

        assert any("pareto" in name for name in pictures), pictures
        browser.open(base + "results/tiny-paper/", until="[...document.images].every(i => i.complete)")
        images = browser.evaluate("[...document.querySelectorAll('article img')].map("
                                  "i => ({src: i.getAttribute('src'), w: i.naturalWidth}))")
        pareto = [i for i in images if "pareto" in i["src"]]
        assert pareto and all(i["w"] > 0 for i in pareto), images
    finally:
        browser.close()

