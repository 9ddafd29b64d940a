"""`conveyor server` in a real process and a real headless Chromium to look at its
dashboard (Debian's `chromium` and `chromium-driver`, driven by selenium): for the
end-to-end test, the screenshots script and the benchmark."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.project import Project, free_port
from tests.support.waiting import wait_for


def call(base: str, method: str, path: str, token: str, body: object = None) -> tuple[int, Any]:
    """An API request with a bearer token: (status, the JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class Server:
    """A `conveyor server` process of a project, on a free loopback port."""

    project: Project
    base: str
    process: subprocess.Popen[str]

    def token(self, name: str, role: str, *envs: str) -> str:
        """A new token (`conveyor tokens create`), as it is printed once."""
        options = [arg for env in envs for arg in ("--env", env)]
        made = self.project.run("tokens", "create", "--name", name, "--role", role, *options)
        return made.stdout.strip()


@contextlib.contextmanager
def serve(project: Project) -> Iterator[Server]:
    """`conveyor server` of `project` until the block ends."""
    port = free_port()
    process = project.start("server", "--listen", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the server to answer", lambda: process.poll() is None and answers(base + "/healthz")
        )
        yield Server(project, base, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium driven by selenium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: Any, base: str, token: str, path: str = "/environments") -> None:
    """Log in on the dashboard's form with `token`, then open `path`."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/login?next={path}")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_for("the page after logging in", lambda: driver.find_elements(By.ID, "who"), 30)
