"""End to end: a health check that keeps getting the same wrong answer fails fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.apps import make_app, start_django_project

pytestmark = pytest.mark.slow

SERVE = """\
import os
from wsgiref.simple_server import make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
from mysite.wsgi import application

make_server("127.0.0.1", int(os.environ["PORT"]), application).serve_forever()
"""

CONFIG = """\
project: hosts
services:
  web:
    run: python3 serve.py
    health:
      type: http
      path: /health
      interval: 200ms
      start_period: 1s
    deploy_timeout: 60s
environments:
  staging:
    listen: ${LISTEN}
"""


def test_django_refusing_the_host_fails_fast_with_allowed_hosts_in_the_hint(
    tmp_path: Path,
) -> None:
    # Production settings as a Django user writes them: DEBUG off, only the public host.
    start_django_project(tmp_path / "app")
    settings = tmp_path / "app" / "mysite" / "settings.py"
    text = settings.read_text().replace("DEBUG = True", "DEBUG = False")
    settings.write_text(text.replace("ALLOWED_HOSTS = []", 'ALLOWED_HOSTS = ["www.example.com"]'))
    app = make_app(tmp_path, CONFIG, {"serve.py": SERVE})
    try:
        app.run("build")
        started = time.monotonic()
        failed = app.run("deploy", "staging", check=False)
        elapsed = time.monotonic() - started
    finally:
        app.shutdown()
    assert failed.returncode == 1, failed.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s of a 60 s deploy_timeout"
    err = failed.stderr
    assert "answered 400 Bad Request 3 times in a row (expected 200)" in err, err
    assert 'body: "Bad Request (400)"' in err
    assert "ALLOWED_HOSTS" in err and "127.0.0.1" in err
    assert "Traceback" not in err
    last = app.json("history", "staging")[0]  # type: ignore[index]
    assert "400 Bad Request" in last["error"]
