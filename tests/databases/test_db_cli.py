"""`conveyor db backup|list|verify|restore` on a project with real databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.databases.conftest import LiveDatabase, seed_shop

CONVEYOR = [sys.executable, "-m", "conveyor"]


class DbProject:
    """A conveyor.yml with one database (the test's) and a home of its own."""

    def __init__(self, root: Path, live: LiveDatabase, verify: str = "read", keep: int = 3):
        self.root = root
        self.live = live
        config = {
            "project": "dbtest",
            "services": {"app": {"run": "sleep 60"}},
            "environments": {"staging": {"listen": "127.0.0.1:18431"}},
            "databases": {
                "main": {"url": live.url.text, "backup": {"verify": verify, "keep": keep}}
            },
        }
        root.mkdir(parents=True, exist_ok=True)
        (root / "conveyor.yml").write_text(yaml.safe_dump(config))
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(root),
            "CONVEYOR_HOME": str(root / "home"),
            "CONVEYOR_USER": "tester@example.com",
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*CONVEYOR, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def test_backup_list_verify_and_restore_give_every_row_back(
    live: LiveDatabase, tmp_path: Path
) -> None:
    seed_shop(live)
    project = DbProject(tmp_path / "p", live, verify="restore")
    original = live.checksums()

    taken = project.json("db", "backup", "main", "-m", "before the big change")
    assert taken["database"] == "main" and taken["engine"] == live.engine
    assert taken["tables"] == {live.key("customers"): 20, live.key("orders"): 300}
    assert taken["verification"]["ok"] is True and taken["verification"]["mode"] == "restore"
    assert "restored into a scratch database" in taken["verification"]["detail"]
    assert Path(taken["path"]).stat().st_mode & 0o777 == 0o600
    listed = project.json("db", "list")
    assert [b["id"] for b in listed] == [taken["id"]]
    table = project.run("db", "list").stdout
    assert taken["id"] in table and "ok (restore" in table

    # The data goes wrong; restoring needs confirmation, then takes a backup of now first.
    live.execute("DELETE FROM orders WHERE id % 2 = 0")
    live.execute("CREATE TABLE oops (x integer)")
    refused = project.run("db", "restore", "main", taken["id"], check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert live.checksums() != original
    restored = project.run("db", "restore", "main", taken["id"], "--yes")
    assert live.checksums() == original
    before = [b for b in project.json("db", "list") if b["id"] != taken["id"]]
    assert len(before) == 1 and before[0]["tables"][live.key("orders")] == 150
    assert before[0]["id"] in restored.stdout


def test_verify_finds_a_damaged_backup_and_says_so(live: LiveDatabase, tmp_path: Path) -> None:
    seed_shop(live, orders=50)
    project = DbProject(tmp_path / "p", live)
    taken = project.json("db", "backup", "main")
    path = Path(taken["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    failed = project.run("db", "verify", taken["id"], check=False)
    assert failed.returncode == 1
    assert "changed since it was taken" in failed.stderr and "Traceback" not in failed.stderr
    record = next(b for b in project.json("db", "list") if b["id"] == taken["id"])
    assert record["verification"]["ok"] is False
    assert "FAILED" in project.run("db", "list").stdout


def test_old_backups_are_pruned_to_keep(live: LiveDatabase, tmp_path: Path) -> None:
    seed_shop(live, orders=5)
    project = DbProject(tmp_path / "p", live, keep=2)
    ids = [project.json("db", "backup", "main")["id"] for _ in range(3)]
    listed = project.json("db", "list", "main")
    assert [b["id"] for b in listed] == [ids[2], ids[1]]
    assert not Path(next(iter([ids[0]]))).exists()
    kept_files = {Path(b["path"]).name for b in listed}
    on_disk = {p.name for p in Path(listed[0]["path"]).parent.iterdir()}
    assert on_disk == kept_files


@pytest.mark.parametrize("live", ["sqlite"], indirect=True)
def test_usage_errors_name_the_database_and_the_backup(live: LiveDatabase, tmp_path: Path) -> None:
    project = DbProject(tmp_path / "p", live)
    unknown = project.run("db", "backup", "nope", check=False)
    assert unknown.returncode == 2 and 'unknown database "nope"' in unknown.stderr
    missing = project.run("db", "verify", "main-20260101-000000-abcd", check=False)
    assert missing.returncode == 2 and "conveyor db list" in missing.stderr
    config = yaml.safe_load((project.root / "conveyor.yml").read_text())
    config["databases"]["main"]["url"] = "sqlite:///data/missing.db"
    (project.root / "conveyor.yml").write_text(yaml.safe_dump(config))
    gone = project.run("db", "backup", "main", check=False)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    assert str(project.root / "data" / "missing.db") in gone.stderr  # relative to conveyor.yml
