"""Where Conveyor keeps its files on a host it reaches over SSH, and how it runs there.

Everything lives in one directory of the login user's home, one per project
(`~/.conveyor/<project>`), so several projects share a host and a normal user
(no root) is enough:

    ~/.conveyor/<project>/
        lib/                     Python packages Conveyor ships (supervisor), and Caddy
                                 on the router's host
        releases/<service>/<id>/ sealed releases, shipped from the deployer
        data/<env>/<service>/    DATA_DIR of each service, kept across releases
        logs/instances/          instance output (supervisord writes it)
        supervisor/              supervisord.conf, programs/*.conf, its log and pid
        caddy/                   the router on its host: config, data, access logs
        run/supervisor.sock      supervisord's control socket (0700 directory), and
                                 caddy-admin.sock, the router's admin API

supervisord runs from the shipped `lib/` with the host's own `python3`, and is
driven with its `supervisorctl` over SSH. Paths here are relative to the login
directory (`$HOME`), which is where an SSH command starts; files written on the
host (supervisord's config, program files) use absolute paths, with the home
asked once per host (`pwd` as the first command of a connection).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

ROOT = PurePosixPath(".conveyor")
_PROJECT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RemoteLayout:
    """The paths of one project's directory on a host (relative to the login home)."""

    project: str

    @property
    def home(self) -> PurePosixPath:
        return ROOT / (_PROJECT_NAME.sub("-", self.project) or "project")

    @property
    def lib(self) -> PurePosixPath:
        return self.home / "lib"

    @property
    def releases(self) -> PurePosixPath:
        return self.home / "releases"

    def release_dir(self, service: str, release_id: str) -> PurePosixPath:
        return self.releases / service / release_id

    def data_dir(self, environment: str, service: str) -> PurePosixPath:
        return self.home / "data" / environment / service

    @property
    def instance_logs(self) -> PurePosixPath:
        return self.home / "logs" / "instances"

    @property
    def supervisor_dir(self) -> PurePosixPath:
        return self.home / "supervisor"

    @property
    def supervisor_conf(self) -> PurePosixPath:
        return self.supervisor_dir / "supervisord.conf"

    @property
    def programs_dir(self) -> PurePosixPath:
        return self.supervisor_dir / "programs"

    @property
    def run_dir(self) -> PurePosixPath:
        return self.home / "run"

    @property
    def supervisor_socket(self) -> PurePosixPath:
        return self.run_dir / "supervisor.sock"

    @property
    def caddy_dir(self) -> PurePosixPath:
        """The router's files when it runs on the host (`router_host:`): its bootstrap
        config, its data and autosaved config, its access logs."""
        return self.home / "caddy"

    @property
    def caddy_binary(self) -> PurePosixPath:
        return self.lib / "caddy"

    @property
    def caddy_admin_socket(self) -> PurePosixPath:
        return self.run_dir / "caddy-admin.sock"

    def python_env(self) -> list[str]:
        """`env` arguments that let the host's python3 import the shipped packages."""
        return ["env", f"PYTHONPATH={self.lib}"]

    def supervisorctl(self, *args: str) -> list[str]:
        """argv of `supervisorctl ARGS` against this project's supervisord on the host."""
        return [
            *self.python_env(),
            "python3",
            "-S",  # no site packages to look through: ~10% of its start-up (`lib/` is enough)
            "-m",
            "supervisor.supervisorctl",
            "-c",
            str(self.supervisor_conf),
            *args,
        ]

    def supervisord(self, home: str | PurePosixPath) -> list[str]:
        """argv that starts this project's supervisord on a host whose login directory is
        `home` (it daemonizes into the project's directory, so every path is absolute). The
        shipped package goes on its own `sys.path` only: a PYTHONPATH would be inherited
        by every instance."""
        root = PurePosixPath(home) / self.home
        boot = (
            "import sys;sys.path.insert(0,sys.argv.pop(1));"
            "from supervisor.supervisord import main;main()"
        )
        return [
            "env",
            "-u",
            "PYTHONPATH",
            "python3",
            "-c",
            boot,
            str(root / "lib"),
            "-c",
            str(root / "supervisor" / "supervisord.conf"),
        ]
