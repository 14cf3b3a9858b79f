"""The web UI in a real browser against a real stack: the embedded broker, `modelog process` and
`modelog serve --background` on a free port under a fresh MODELOG_HOME; data logged with the real SDK;
Debian's chromium driven headless by Selenium through /usr/bin/chromedriver (nothing downloads a browser).

One stack per module (starting it takes seconds); each test logs its own runs, models and alerts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid

import pytest

from modelog import Client, Settings
from modelog.wire.home import free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)
XSS = "<img src=x onerror=alert(1)>"


class Stack:
    """The running deployment: environment, URLs, the admin's login URL, and helpers."""

    def __init__(self, env: dict[str, str], base: str, login: str) -> None:
        self.env, self.base, self.login_url = env, base, login
        self.admin_token = login.split("token=", 1)[1]
        self.settings = Settings.load(env=env)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("MODELOG_")}
        full.update(self.env)
        out = subprocess.run([sys.executable, "-m", "modelog", *args], env=full, capture_output=True, text=True,
                             timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"modelog {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def token(self, principal: str, *roles: str) -> str:
        args = ["token", "create", principal]
        for r in roles:
            args += ["--role", r]
        return self.cli(*args).stdout.strip().splitlines()[0].strip()

    def client(self, principal: str = "tester") -> Client:
        import dataclasses

        return Client(dataclasses.replace(self.settings, principal=principal))

    def wait_stream_live(self, timeout: float = 30) -> None:
        """Block until the server's live feed reads the log (its first subscriber starts it at the log's end)."""
        req = urllib.request.Request(self.base + "/api/v1/stream?run_id=none",
                                     headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            for line in r:
                if line.startswith(b": subscribed"):
                    return
                if line.startswith(b"event: error"):
                    raise AssertionError("the live feed cannot read the log")

    def api(self, path: str, token: str | None = None) -> dict:
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token or self.admin_token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not HAVE_BROWSER:
        pytest.skip(f"the UI tests drive Debian's chromium: {CHROMIUM} and {CHROMEDRIVER} are not installed "
                    "(apt-get install -y chromium chromium-driver; .ci/run does it)")
    from modelog.local.broker import running_broker

    home = tmp_path_factory.mktemp("ui-home")
    with running_broker(tmp_path_factory.mktemp("ui-broker"), storage="memory") as bootstrap:
        env = {"MODELOG_HOME": str(home), "MODELOG_KAFKA_BOOTSTRAP": bootstrap,
               "MODELOG_TOPIC_PREFIX": f"ui{uuid.uuid4().hex[:8]}.", "MODELOG_SESSION_TIMEOUT_MS": "2000",
               "MODELOG_LINGER_MS": "20", "MODELOG_PRINCIPAL": "tester",
               "MODELOG_ARTIFACT_URI": (home / "artifacts").as_uri()}
        probe = Stack(env, "", "x?token=x")
        probe.cli("process", "--background")
        try:
            out = probe.cli("serve", "--background", "--port", str(free_port())).stdout
            login = re.search(r"open: (http://\S+/\?token=\S+)", out).group(1)
            yield Stack(env, login.split("/?", 1)[0], login)
        finally:
            probe.cli("serve", "--stop", check=False)
            probe.cli("process", "--stop", check=False)


@pytest.fixture(scope="module")
def driver(stack):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture
def browser(stack, driver):
    """The browser, logged in as the local admin through the URL `modelog serve` printed."""
    login(driver, stack.login_url)
    return driver


def login(driver, url: str) -> None:
    """Log in with a `/?token=…` URL (a fresh session: cookies of an earlier login are dropped)."""
    base = url.split("/?", 1)[0]
    driver.get(base + "/login")
    driver.delete_all_cookies()
    driver.get(url)
    assert "token=" not in driver.current_url  # the token leaves the address bar at once

