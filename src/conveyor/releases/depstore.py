"""Installed virtualenvs shared by releases: one sealed tree per dependency key.

Releases whose requirements or lock files, install commands and env are the
same (the same dependency key, see `dependencies`) would install the same
virtualenv. The first release that installs one hands it to the store,
`<releases>/.dependencies/<key>/<path>`, sealed (read-only, with its file
list); that release and every later one with the key get a relative symlink
in its place. Hard links (what `node_modules` still gets) share files but not
directories, and a Django virtualenv has 2,870 of them: 11 MiB a release.

Only virtualenvs go to the store (`pyvenv.cfg` at the top, and no `.pth` file
naming the release: an editable install points into the release that made
it). `node_modules` keeps hard links: Next.js refuses a symlinked
`node_modules` (vercel/next.js#88335), and Node tools write caches into it.

The store is read-only while a release's `build:` commands run: its modes
keep out any user but root, and for root the commands run in a private mount
namespace where the store is mounted read-only (`protected_argv`). Where that
cannot be done (a container without CAP_SYS_ADMIN), a release gets hard links
to the store's files instead, as `node_modules` does.

A tree's modules are compiled to bytecode when the store takes it, so that a
python run there as root later writes no cache into it; a tree changed anyway
is replaced by the next build of a release that links it (`adopt(replace=)`).

A release's digest walks these symlinks as directories, so a host that gets
the release shipped with real directories computes the same digest. A tree
stays in the store while any release has its key (`collect`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import subprocess
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from conveyor.paths import Paths, make_dir, passable_mode
from conveyor.releases import seal
from conveyor.releases.relocate import rewrite_path

STORE = ".dependencies"
_INCOMING = ".incoming-"
_REPLACED = ".replaced-"  # a tree that was changed after it was stored, kept until collected
_COMPILE_TIMEOUT = 600.0  # seconds to compile a virtualenv's modules
_ELSEWHERE = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")  # no cache, or not beside
# `sh -c` program: mount $1 read-only onto itself, then run the rest of the arguments.
_READ_ONLY = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'


def protected_argv(tree: Path, argv: list[str]) -> list[str]:
    """`argv` run where `tree` (the store) is read-only even for root (see the module
    docstring)."""
    if os.geteuid() != 0:
        return argv  # the store's modes keep the command out
    namespace = ["unshare", "--mount", "--propagation", "private"]
    return [*namespace, "sh", "-c", _READ_ONLY, "sh", str(tree), *argv]


@functools.cache
def protectable() -> bool:
    """Whether build commands can be kept from writing into the store."""
    if os.geteuid() != 0:
        return True
    try:
        done = subprocess.run(
            protected_argv(Path("/"), ["true"]), capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def store_root(paths: Paths) -> Path:
    return paths.releases / STORE


def stored_tree(paths: Paths, key: str) -> Path | None:
    """The store's sealed tree for `key`, if there is a complete one."""
    tree = store_root(paths) / key
    return tree if (tree / seal.FILE_LIST).is_file() else None


def shareable(release_dir: Path, path: str) -> bool:
    """Whether the installed `path` of the release can live in the store: a virtualenv
    (not a symlink already) that names the release in none of its `.pth` files."""
    tree = release_dir / path
    if tree.is_symlink() or not (tree / "pyvenv.cfg").is_file():
        return False
    named = os.fsencode(release_dir)
    for pth in tree.glob("lib/python*/site-packages/*.pth"):
        with contextlib.suppress(OSError):
            if named in pth.read_bytes():
                return False
    return True


def adopt(
    paths: Paths, key: str, release_dir: Path, names: Collection[str], *, replace: bool = False
) -> Path:
    """Move the release's `names` (installed, shareable) into the store under `key` and
    link them back; returns the store's tree. When the store already has the key (another
    service built the same install meanwhile), the release's own copies are dropped, unless
    `replace`: the stored tree was changed, and is moved aside (`collect` deletes it) for
    this one."""
    root = store_root(paths)
    make_dir(root, passable_mode())
    if replace and (root / key).exists():
        (root / key).rename(root / f"{_REPLACED}{key}-{secrets.token_hex(4)}")
    tree = stored_tree(paths, key)
    if tree is None:
        for name in names:
            _compile(release_dir / name)
        incoming = root / f"{_INCOMING}{key}-{secrets.token_hex(4)}"
        incoming.mkdir()
        try:
            for name in names:
                (incoming / name).parent.mkdir(parents=True, exist_ok=True)
                (release_dir / name).rename(incoming / name)
                _name_the_store(incoming / name, release_dir / name, root / key / name)
            seal.record(incoming, [], with_entries=True)
            seal.make_read_only(incoming, [])
            incoming.chmod(passable_mode() | 0o500)
            try:
                incoming.rename(root / key)
            except OSError:
                if stored_tree(paths, key) is None:
                    raise
                _remove(incoming)  # another service's build stored the same install first
        except BaseException:
            for name in names:  # back where the build put them
                if (incoming / name).exists() and not (release_dir / name).exists():
                    (incoming / name).rename(release_dir / name)
            _remove(incoming)
            raise
        tree = root / key
    else:
        for name in names:
            _remove(release_dir / name)
    link(tree, release_dir, names)
    return tree


def link(tree: Path, release_dir: Path, names: Iterable[str]) -> None:
    """Symlink each of `names` in the release to the store's `tree` (relative links: the
    same from any release of any service)."""
    for name in names:
        place = release_dir / name
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(os.path.relpath(tree / name, place.parent))


def shared_paths(paths: Paths, release_dir: Path, names: Iterable[str]) -> list[str]:
    """Which of the dependency `names` of the release are links into the store."""
    root = os.path.realpath(store_root(paths)) + os.sep
    found = []
    for name in names:
        place = release_dir / name
        if place.is_symlink() and os.path.realpath(place).startswith(root):
            found.append(name)
    return found


def shared_in(manifest: dict[str, Any]) -> list[str]:
    """The dependency paths that a release's manifest says link the store."""
    return list((manifest.get("dependencies") or {}).get("shared") or [])


def followed(release_dir: Path) -> list[str]:
    """The dependency paths a sealed release links into the store, from its manifest
    (what shipping sends as real directories)."""
    try:
        manifest = json.loads((release_dir / seal.MANIFEST).read_text())
    except (OSError, ValueError):
        return []
    return shared_in(manifest)


def collect(paths: Paths, keys_in_use: Collection[str]) -> list[str]:
    """Delete the store's trees no release uses (and what an interrupted adopt left);
    returns the keys deleted. The caller holds every service's build lock."""
    root = store_root(paths)
    if not root.is_dir():
        return []
    deleted = []
    for child in root.iterdir():
        if child.name.startswith(_INCOMING):
            _remove(child)
        elif child.name not in keys_in_use:
            _remove(child)
            deleted.append(child.name)
    return deleted


def _compile(venv: Path) -> None:
    """Write the bytecode cache of every module, with the virtualenv's own python: a
    python run there as root (which the tree's modes do not stop) would otherwise write
    the caches it misses into the tree every release shares, and every one of them would
    then fail its check. Modules that do not compile (a package's files for another
    Python) are left without one, as pip leaves them."""
    python = venv / "bin" / "python"
    if python.exists():
        argv = [str(python), "-m", "compileall", "-q", "-q", "-j", "0", str(venv)]
        # The caches go beside the modules, whatever this process was told.
        env = {k: v for k, v in os.environ.items() if k not in _ELSEWHERE}
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                argv, env=env, capture_output=True, timeout=_COMPILE_TIMEOUT, check=False
            )


def _name_the_store(venv: Path, old: Path, new: Path) -> None:
    """Where the virtualenv's `pyvenv.cfg` and activate scripts name the release it was
    installed in, name its place in the store (console scripts run the python beside
    them: `relocate`)."""
    scripts = list((venv / "bin").iterdir()) if (venv / "bin").is_dir() else []
    for path in [venv / "pyvenv.cfg", *scripts]:
        if path.is_file() and not path.is_symlink():
            rewrite_path(str(path), str(path), os.fsencode(old), os.fsencode(new))


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    else:
        seal.remove(path)
