"""Small real apps in their own git repository and Conveyor home, for end-to-end tests.

`make_app` writes the files and a conveyor.yml; `SERVER` is a standard-library
HTTP server whose port, host and /health answer come from its command line
only (never from $PORT), so a test sees what Conveyor put in the argv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.project import Project, cli_environment, free_port, init_repository

SERVER = '''\
"""A tiny HTTP server: server.py --port N [--host H] [--health-status S]."""
import argparse
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--health-status", type=int, default=200)
args = parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = args.health_status if self.path == "/health" else 200
        body = f"answer {status} from port {args.port}\\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET


Server((args.host, args.port), Handler).serve_forever()
'''


def make_app(tmp: Path, config: str, files: dict[str, str] | None = None) -> Project:
    """A git repository holding `files` and `config` (conveyor.yml), with `LISTEN` set to
    a free address for the environment's router to use as `${LISTEN}`."""
    root = tmp / "app"
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "conveyor.yml").write_text(config)
    init_repository(root)
    home = tmp / "home"
    env = {**cli_environment(home), "LISTEN": f"127.0.0.1:{free_port()}"}
    return Project(root, home, env)


def start_django_project(root: Path, name: str = "mysite") -> None:
    """`django-admin startproject NAME .` in `root`, as a Django user starts."""
    root.mkdir(parents=True, exist_ok=True)
    django_admin = Path(sys.executable).parent / "django-admin"
    subprocess.run([str(django_admin), "startproject", name, "."], cwd=root, check=True)
