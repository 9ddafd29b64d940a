"""A throwaway copy of examples/shop in its own git repository and Conveyor home."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CONVEYOR = [sys.executable, "-m", "conveyor"]
PYCACHE = Path(tempfile.gettempdir()) / "conveyor-tests-pycache"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Project:
    root: Path
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None  # another file than conveyor.yml (--config)

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 180,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        options = ["--config", self.config] if self.config else []
        result = subprocess.run(
            [*CONVEYOR, *options, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"conveyor {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`conveyor ARGS` in the background, its output piped (the caller ends it)."""
        options = ["--config", self.config] if self.config else []
        return subprocess.Popen(
            [*CONVEYOR, *options, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    def commit(self, message: str) -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message, "--allow-empty")

    def write_faults(self, **faults: object) -> None:
        (self.root / "faults.json").write_text(json.dumps(faults))
        self.commit(f"faults {faults}")

    def clear_faults(self) -> None:
        (self.root / "faults.json").unlink(missing_ok=True)
        self.commit("no faults")

    def configure(self, environment: str, strategy: object, analysis: object = None) -> None:
        """Give `environment` another strategy (and more top-level analyses) in conveyor.yml."""
        import yaml

        path = self.root / (self.config or "conveyor.yml")
        config = yaml.safe_load(path.read_text())
        config["environments"][environment]["strategy"] = strategy
        if analysis is not None:
            config["analysis"] = {**config.get("analysis", {}), **analysis}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.commit(f"{environment}: strategy {strategy}")

    def configure_service(self, service: str, **settings: object) -> None:
        """Set keys of a service in conveyor.yml (e.g. `smoke=[...]`)."""
        import yaml

        path = self.root / (self.config or "conveyor.yml")
        config = yaml.safe_load(path.read_text())
        config["services"][service].update(settings)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.commit(f"{service}: {settings}")

    def configure_top(self, **settings: object) -> None:
        """Set top-level keys of conveyor.yml (e.g. `databases={...}`)."""
        import yaml

        path = self.root / (self.config or "conveyor.yml")
        config = yaml.safe_load(path.read_text())
        config.update(settings)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.commit(f"conveyor.yml: {sorted(settings)}")

    def shutdown(self) -> None:
        """Stop everything this project started: instances, Caddy, supervisord."""
        from conveyor.paths import Paths
        from conveyor.targets.supervisor import Supervisor

        paths = Paths(self.home)
        if paths.supervisor_socket.exists():
            Supervisor(paths).shutdown()
        deadline = time.monotonic() + 15
        pidfile = paths.supervisor_dir / "supervisord.pid"
        while pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_project(tmp: Path, example: str = "shop") -> Project:
    root = tmp / example
    shutil.copytree(
        EXAMPLES / example,
        root,
        ignore=shutil.ignore_patterns(
            ".conveyor", "__pycache__", "faults.json", ".venv", "reports", "staticfiles"
        ),
    )
    init_repository(root)
    home = tmp / "home"
    env = {
        **cli_environment(home),
        "SHOP_STAGING_LISTEN": f"127.0.0.1:{free_port()}",
        "SHOP_PRODUCTION_LISTEN": f"127.0.0.1:{free_port()}",
    }
    return Project(root, home, env)


def git_project(root: Path, home: Path) -> Project:
    """The directory `root` as a git repository with one commit, and a Conveyor home."""
    init_repository(root)
    return Project(root, home, cli_environment(home))


def passable(path: Path) -> None:
    """Let other users pass through the directories on the way to `path` (not list them).

    The suite runs as root, so the apps it deploys run as the unprivileged `conveyor`
    user, which must reach their releases and data in the Conveyor home as it would on a
    server; pytest makes its temporary directories 0700.
    """
    for directory in [path, *path.parents]:
        if directory == Path(tempfile.gettempdir()):
            break
        with contextlib.suppress(FileNotFoundError):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(stat.S_IMODE(mode) | 0o011)


def init_repository(root: Path) -> None:
    """Make `root` a git repository whose first commit ("v1") holds all its files."""
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "tester@example.com")
    git(root, "config", "user.name", "Tester")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")


def cli_environment(home: Path) -> dict[str, str]:
    """The environment of the CLI in a test: this one, with its own Conveyor home."""
    passable(home)
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(home),
        "CONVEYOR_USER": "tester@example.com",
        # Bytecode goes to one cache outside the project (in it, __pycache__ would
        # dirty the git tree): each CLI call then starts from compiled modules.
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        # As in an activated venv: the shop's `python3` is this one (not a version
        # manager's shell shim in front of it, which costs a tenth of a second a start).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("CONVEYOR_FAILPOINTS", None)
    env.pop("CONVEYOR_STATE_URL", None)
    return env
