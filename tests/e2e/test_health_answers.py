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


VIEWS = """
from django.http import HttpResponse


def health(request):
    return HttpResponse("ok")


def boom(request):
    raise RuntimeError("the database password=hunter2 is wrong")


urlpatterns += [path("health/", health), path("crash", boom)]
"""


@pytest.mark.parametrize(
    ("case", "health_path", "status", "body", "hint"),
    [
        # Production settings as a Django user writes them: only the public host.
        ("allowed_hosts", "/health", "400 Bad Request", "Bad Request (400)", "ALLOWED_HOSTS"),
        # APPEND_SLASH: the page is /health/ and /health redirects to it.
        ("slash", "/health", "301 Moved Permanently", "", "set health.path in conveyor.yml to"),
        ("crash", "/crash", "500 Internal Server Error", "Server Error (500)", "conveyor logs"),
    ],
)
def test_a_django_app_answering_the_same_wrong_status_fails_fast_with_a_hint(
    tmp_path: Path, case: str, health_path: str, status: str, body: str, hint: str
) -> None:
    start_django_project(tmp_path / "app")
    settings = tmp_path / "app" / "mysite" / "settings.py"
    hosts = '["www.example.com"]' if case == "allowed_hosts" else '["www.example.com", "127.0.0.1"]'
    text = settings.read_text().replace("DEBUG = True", "DEBUG = False")
    settings.write_text(text.replace("ALLOWED_HOSTS = []", f"ALLOWED_HOSTS = {hosts}"))
    urls = tmp_path / "app" / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + VIEWS)
    config = CONFIG.replace("path: /health", f"path: {health_path}")
    app = make_app(tmp_path, config, {"serve.py": SERVE})
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
    assert f"answered {status} 3 times in a row (expected 200)" in err, err
    if body:
        assert f'body: "{body}"' in err
    hint_line = err[err.index("hint: ") :]
    assert hint in hint_line, err
    if case == "slash":
        assert "location: /health/" in err and "/health/" in hint_line
    assert "hunter2" not in err
    assert "Traceback" not in err
    last = app.json("history", "staging")[0]  # type: ignore[index]
    assert status in last["error"]
