"""The demo portal page in real headless Chromium (Debian's /usr/bin/chromium), driven over
the DevTools protocol: the banner appears for a broken account and goes away, without a
reload, after the password is restored and a recheck is posted.

Screenshots: test-artifacts/browser/*.png (gitignored).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.test_demo import ROOT, Demo, alive, descendants

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "browser"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is missing (apt-get install chromium)"
    ),
]


class Browser:
    """One headless Chromium page over the DevTools protocol (a websocket)."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "--window-size=1000,760",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, timeout: float = 30) -> None:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.proc.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self._ws.receive(timeout=30)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))

    async def eval(self, expression: str) -> Any:
        res = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # the page may still be loading: an exception counts as "not yet"
            value = await self.eval(
                f"(() => {{ try {{ return {expression}; }} catch (e) {{ return null; }} }})()"
            )
            if value:
                return value
            await asyncio.sleep(0.2)
        html = await self.eval("document.body.outerHTML")
        raise AssertionError(f"timed out waiting for {what}; page:\n{html}")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(data))
        return path

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def demo() -> Iterator[Demo]:
    d = Demo("--interactive", "--speed", "10", stdin=True)
    try:
        d.wait_line(r"commands: break NAME")
        yield d
    finally:
        d.kill()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    b = Browser(tmp_path / "chromium-profile")
    try:
        await b.connect()
        yield b
    finally:
        await b.close()


BANNER = "document.getElementById('syncwatch-banner')"


async def test_banner_shows_the_cause_and_goes_away_after_fix_and_recheck(
    demo: Demo, browser: Browser
) -> None:
    procs = descendants(demo.proc.pid)
    demo.send("break alice")
    demo.wait_line(r"acc-alice .*-> disconnected .*auth_failed")

    await browser.send("Page.enable")
    await browser.send("Page.navigate", url=demo.url("/portal/?owner=u-alice&interval=500"))
    cause = await browser.wait_for(
        f"{BANNER}.hidden ? null : {BANNER}.querySelector('[data-cause]')?.dataset.cause",
        "the banner",
    )
    assert cause == "auth_failed"
    title = await browser.eval(f"{BANNER}.querySelector('.syncwatch-title').textContent")
    message = await browser.eval(f"{BANNER}.querySelector('.syncwatch-message').textContent")
    impacts = await browser.eval(
        f"[...{BANNER}.querySelectorAll('.syncwatch-impacts li')].map(li => li.textContent)"
    )
    link = await browser.eval(f"{BANNER}.querySelector('a.syncwatch-reconnect').href")
    assert "needs attention" in title
    assert "password may have changed" in message
    assert impacts, "the banner lists what stopped working"
    assert link == demo.url("/portal/reconnect?account=acc-alice")
    assert await browser.eval(f"{BANNER}.dataset.severity") == "error"
    page_text = await browser.eval("document.documentElement.outerHTML")
    token = demo.wait_line(r"cat (\S+/api-token)").group(1)
    assert Path(token).read_text().strip() not in page_text, "the browser never sees the token"
    shown = await browser.screenshot("banner-shown.png")

    # a failed poll keeps the banner (no flicker) and backs off
    assert await browser.eval("""(async () => {
        const b = window.syncwatchBanner, real = b.fetch;
        b.fetch = () => Promise.reject(new Error('unreachable'));
        await b.poll();
        const kept = !document.getElementById('syncwatch-banner').hidden;
        const backoff = b.failures === 1 && b.nextDelay() > b.interval;
        b.fetch = real;
        return kept && backoff;
    })()""")

    # no reload from here on: a marker on window survives only if the page stays the same
    await browser.eval("window.__sameDocument = 'yes'")
    demo.send("fix alice")
    demo.wait_line(r"fix alice: done")
    demo.send("recheck alice")
    demo.wait_line(r"recheck acc-alice: ok \| no banner")
    await browser.wait_for(f"{BANNER}.hidden", "the banner to go away")
    assert await browser.eval(f"{BANNER}.childElementCount") == 0
    assert await browser.eval("window.__sameDocument") == "yes"
    gone = await browser.screenshot("banner-gone.png")
    assert shown.stat().st_size > 1000 and gone.stat().st_size > 1000

    demo.send("quit")
    assert demo.wait(40) == 0, demo.text
    assert alive(procs) == {}


async def test_owner_switch_and_reconnect_page_recheck(demo: Demo, browser: Browser) -> None:
    """dave's account is disabled: his banner shows; the Reconnect page repairs it and the
    portal page's recheck() call clears the banner."""
    await browser.send("Page.enable")
    await browser.send("Page.navigate", url=demo.url("/portal/?owner=u-bob&interval=500"))
    await browser.wait_for("document.getElementById('owner').options.length === 5", "owners")
    await browser.eval("""(() => {
        const s = document.getElementById('owner');
        s.value = 'u-dave';
        s.dispatchEvent(new Event('change'));
    })()""")
    cause = await browser.wait_for(
        f"{BANNER}.hidden ? null : {BANNER}.querySelector('[data-cause]')?.dataset.cause",
        "dave's banner",
    )
    assert cause == "account_suspended"
    await browser.eval(f"{BANNER}.querySelector('a.syncwatch-reconnect').click()")
    await browser.wait_for("location.pathname === '/portal/reconnect'", "the reconnect page")
    await browser.eval("document.querySelector('form button').click()")
    await browser.wait_for("location.pathname === '/portal/'", "back on the portal page")
    # dave's logins are paused by the breaker after CONTACTADMIN: only a recheck (here the
    # page's recheck() call after the reconnect) gets him probed again before an hour
    demo.wait_line(r"acc-dave +disconnected -> ok")
    await browser.wait_for(
        f"{BANNER}.hidden && window.syncwatchBanner.doc && !window.syncwatchBanner.doc.show",
        "the banner to go away after recheck()",
    )
    await browser.screenshot("reconnected.png")
