"""The dependency store (`conveyor.releases.depstore`): which trees go there, what a release
that links one seals, and that the store stays read-only for build commands."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conveyor.paths import Paths
from conveyor.releases import depstore, seal


def venv_release(paths: Paths, release_id: str, *, pth: str = "") -> Path:
    root = paths.release_dir("web", release_id)
    site = root / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("A = 1\n")
    (root / ".venv" / "bin").mkdir()
    (root / ".venv" / "bin" / "tool").write_text(f"#!/bin/sh\n# made in {root}/.venv\n")
    (root / ".venv" / "bin" / "tool").chmod(0o755)
    (root / ".venv" / "lib64").symlink_to("lib")
    (root / ".venv" / "pyvenv.cfg").write_text(f"command = python3 -m venv {root}/.venv\n")
    if pth:
        (site / "editable.pth").write_text(pth)
    (root / "app.py").write_text("print('hi')\n")
    return root


def test_a_release_linking_the_store_has_the_digest_of_the_same_tree_with_real_directories(
    tmp_path: Path,
) -> None:
    """What a host computes for the shipped release (real directories) is what was built."""
    paths = Paths(tmp_path / "home").ensure()
    root = venv_release(paths, "r1")
    tree = depstore.adopt(paths, "k1", root, [".venv"])
    assert (root / ".venv").is_symlink() and (tree / ".venv" / "pyvenv.cfg").is_file()
    assert str(root) not in (tree / ".venv" / "bin" / "tool").read_text()  # names the store
    assert str(tree / ".venv") in (tree / ".venv" / "pyvenv.cfg").read_text()
    sealed = seal.record(root, [], follow=[".venv"], stored=tree)
    assert seal.check(root, [], follow=[".venv"]).intact(sealed.digest)  # walked: the same

    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True, ignore=shutil.ignore_patterns(".venv"))
    shutil.copytree(tree / ".venv", copy / ".venv", symlinks=True)
    assert (copy / ".venv" / "lib64").is_symlink()
    assert seal.check(copy, []).intact(sealed.digest)


def test_a_change_in_the_store_is_named_by_the_release_check(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home").ensure()
    root = venv_release(paths, "r1")
    tree = depstore.adopt(paths, "k1", root, [".venv"])
    sealed = seal.record(root, [], follow=[".venv"], stored=tree)
    module = tree / ".venv" / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py"
    module.chmod(0o644)
    module.write_text("A = 2\n")
    checked = seal.check(root, [], follow=[".venv"])
    assert not checked.intact(sealed.digest)
    assert checked.changes == ("modified: .venv/lib/python3.11/site-packages/pkg/__init__.py",)


def test_an_editable_install_naming_the_release_stays_in_it(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home").ensure()
    plain = venv_release(paths, "r1")
    editable = venv_release(paths, "r2", pth="/elsewhere\n")
    assert depstore.shareable(plain, ".venv") and depstore.shareable(editable, ".venv")
    named = venv_release(paths, "r3", pth=f"{paths.release_dir('web', 'r3')}/src\n")
    assert not depstore.shareable(named, ".venv")
    (plain / "node_modules").mkdir()
    assert not depstore.shareable(plain, "node_modules")  # not a virtualenv


def test_a_second_install_of_the_same_key_links_the_first(tmp_path: Path) -> None:
    """Two services built at once from one code base: the store keeps the first tree."""
    paths = Paths(tmp_path / "home").ensure()
    one, two = venv_release(paths, "r1"), venv_release(paths, "r2")
    first = depstore.adopt(paths, "k1", one, [".venv"])
    second = depstore.adopt(paths, "k1", two, [".venv"])
    assert first == second and (two / ".venv").resolve() == (first / ".venv").resolve()
    assert depstore.shared_paths(paths, two, [".venv", "node_modules"]) == [".venv"]
    assert sorted(p.name for p in depstore.store_root(paths).iterdir()) == ["k1"]


def test_collect_keeps_the_trees_in_use_and_what_an_adopt_left(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home").ensure()
    for key, release in (("k1", "r1"), ("k2", "r2")):
        depstore.adopt(paths, key, venv_release(paths, release), [".venv"])
    (depstore.store_root(paths) / ".incoming-k3-0000").mkdir()
    assert depstore.collect(paths, {"k2"}) == ["k1"]
    assert [p.name for p in depstore.store_root(paths).iterdir()] == ["k2"]


@pytest.mark.skipif(os.geteuid() != 0, reason="root alone gets past the store's modes")
def test_root_cannot_write_into_the_store_from_a_build_command(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home").ensure()
    tree = depstore.adopt(paths, "k1", venv_release(paths, "r1"), [".venv"])
    target = tree / ".venv" / "new-file"
    if not depstore.protectable():
        pytest.skip("no private mount namespace here (a container without CAP_SYS_ADMIN)")
    argv = depstore.protected_argv(tree, ["sh", "-c", f"touch {target}"])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    assert not target.exists()
    outside = tmp_path / "outside"
    argv = depstore.protected_argv(tree, ["sh", "-c", f"touch {outside}"])
    assert subprocess.run(argv, check=False).returncode == 0 and outside.exists()


def test_an_install_stored_meanwhile_by_another_build_is_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two services' builds (each holds only its own lock) store the same key at once: the
    one that renames second links the first one's tree instead of failing."""
    paths = Paths(tmp_path / "home").ensure()
    first = depstore.adopt(paths, "k1", venv_release(paths, "r1"), [".venv"])
    real = depstore.stored_tree
    looks = iter([None])  # the second build looks before the first one's rename lands
    monkeypatch.setattr(depstore, "stored_tree", lambda p, k: next(looks, real(p, k)))
    two = venv_release(paths, "r2")
    assert depstore.adopt(paths, "k1", two, [".venv"]) == first
    assert (two / ".venv").resolve() == (first / ".venv").resolve()
    assert sorted(p.name for p in depstore.store_root(paths).iterdir()) == ["k1"]
