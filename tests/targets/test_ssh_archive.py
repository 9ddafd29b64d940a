"""A release that hosts get whole is packed once per command (`conveyor.targets.ssh_archive`),
however many hosts get it; the SSH target sends it over SFTP and checks it on each host
(tests/targets/test_ssh_target.py ships real releases to test hosts)."""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path

import pytest

from conveyor.targets import ssh_archive


def release(tmp_path: Path) -> Path:
    root = tmp_path / "releases" / "web" / "r1"
    (root / "bin").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "link").symlink_to("app.py")
    return root


def test_every_host_at_once_shares_one_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release(tmp_path)
    packed: list[Path] = []
    real_pack = ssh_archive.pack

    def counting_pack(release_dir: Path, archive: Path) -> None:
        packed.append(release_dir)
        real_pack(release_dir, archive)

    monkeypatch.setattr(ssh_archive, "pack", counting_pack)

    archives = ssh_archive.SharedArchives()

    async def scenario() -> list[Path]:
        got = await asyncio.gather(*(archives.get(root) for _ in range(8)))
        got.append(await archives.get(root))  # a later host: the same file
        return got

    got = asyncio.run(scenario())
    assert packed == [root] and len(set(got)) == 1
    with tarfile.open(got[0]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"./app.py", "./bin/tool", "./link"} <= set(members)
    assert members["./bin/tool"].mode & 0o111 and members["./link"].issym()
    archives.close()


def test_close_removes_the_archives(tmp_path: Path) -> None:
    root = release(tmp_path)
    archives = ssh_archive.SharedArchives()

    async def scenario() -> Path:
        return await archives.get(root)

    archive = asyncio.run(scenario())
    assert archive.is_file()
    archives.close()
    assert not archive.exists() and not archive.parent.exists()


def test_a_release_that_cannot_be_packed_is_tried_again(tmp_path: Path) -> None:
    archives = ssh_archive.SharedArchives()

    async def scenario() -> None:
        with pytest.raises(FileNotFoundError):
            await archives.get(tmp_path / "missing")
        root = release(tmp_path)
        (tmp_path / "missing").symlink_to(root)
        assert (await archives.get(tmp_path / "missing")).is_file()

    asyncio.run(scenario())
    archives.close()
