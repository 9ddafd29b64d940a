"""Shipping a sealed release to a host: the commands, and the check that runs on the host.

A release crosses the wire into a staging directory beside its final place
(`releases/<service>/.<id>.incoming`), with rsync over OpenSSH when both ends
have it (hard-linking what did not change from the host's newest release of the
service, `--link-dest`), else as one tar.gz over SFTP. Then `VERIFY` runs on
the host with its own `python3`: it computes the release's digest the way
`conveyor.releases.digest` does (paths, executable bits, contents, symlinks;
the manifest, the file lists and the `writable:` directories left out). When
it matches, the tree is made read-only and renamed into place; when it does not,
the staging directory is removed and the changed files are named (compared
with the release's `conveyor-files.txt`). Pure: nothing here touches the network.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conveyor.ssh.hosts import HostSpec

# Run as `python3 - STAGING FINAL DIGEST` with this program on stdin. STAGING == FINAL
# checks a release already in place (and removes it when it is not intact). Prints one
# JSON line: {"state": "missing" | "ok" | "bad", "files", "changes", "previous", "rsync"}.
VERIFY = r"""
import hashlib, json, os, shutil, stat, sys
staging, final, expected = sys.argv[1:4]
MANIFEST, LISTS = "conveyor-release.json", ("conveyor-files.txt", "conveyor-files-shared.txt")

def previous():
    parent = os.path.dirname(final)
    try:
        names = [n for n in os.listdir(parent) if not n.startswith(".")]
    except OSError:
        return None
    dirs = [os.path.join(parent, n) for n in names if os.path.join(parent, n) != final]
    dirs = [d for d in dirs if os.path.isdir(d) and not os.path.islink(d)]
    return max(dirs, key=os.path.getmtime) if dirs else None

def report(state, **more):
    info = {"state": state, "previous": previous(), "rsync": bool(shutil.which("rsync"))}
    info.update(more)
    print(json.dumps(info))
    sys.exit(0)

def removable(root):
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    os.chmod(root, 0o700)

def remove(root):
    if os.path.lexists(root):
        removable(root)
        shutil.rmtree(root)

if not os.path.isdir(staging):
    report("missing")
try:
    with open(os.path.join(staging, MANIFEST)) as f:
        writable = list(json.load(f).get("writable") or [])
except (OSError, ValueError):
    writable = []
excluded = set([MANIFEST, *LISTS, *writable])

def skip(rel):
    return any(rel == e or rel.startswith(e + "/") for e in excluded)

entries = []
for dirpath, dirnames, filenames in os.walk(staging):
    rel_dir = os.path.relpath(dirpath, staging)
    rel_dir = "" if rel_dir == "." else rel_dir + "/"
    for name in list(dirnames):
        path = os.path.join(dirpath, name)
        if os.path.islink(path):
            filenames.append(name)
            dirnames.remove(name)
    for name in filenames:
        rel = rel_dir + name
        if not skip(rel):
            entries.append(rel)
entries.sort()
total, now = hashlib.sha256(), {}
for rel in entries:
    path = os.path.join(staging, rel)
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        total.update(rel.encode() + b"\0" + b"L" + target.encode() + b"\0")
        now[rel] = "-> " + target
        continue
    if not stat.S_ISREG(mode):
        continue
    total.update(rel.encode() + b"\0")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    total.update(b"X" if mode & 0o111 else b"F")
    total.update(digest.digest())
    now[rel] = digest.hexdigest()
if total.hexdigest() != expected:
    recorded = {}
    for name in LISTS:
        try:
            with open(os.path.join(staging, name), encoding="utf-8") as f:
                for line in f:
                    value, _, rel = line.rstrip("\n").partition("\t")
                    recorded[rel] = value
        except OSError:
            pass
    changes = []
    for rel in sorted(set(now) | set(recorded)):
        if rel not in recorded:
            changes.append("added: " + rel)
        elif rel not in now:
            changes.append("removed: " + rel)
        elif now[rel] != recorded[rel]:
            changes.append("modified: " + rel)
    remove(staging)
    report("bad", files=len(now), changes=changes or ["the digest differs"])
keep = {os.path.join(staging, w) for w in writable}
for dirpath, dirnames, filenames in os.walk(staging, topdown=False):
    if any(dirpath == k or dirpath.startswith(k + "/") for k in keep):
        continue
    for name in filenames + dirnames:
        path = os.path.join(dirpath, name)
        if os.path.islink(path) or path in keep:
            continue
        mode = os.lstat(path).st_mode
        x = 0o111 if mode & stat.S_IXUSR or stat.S_ISDIR(mode) else 0
        os.chmod(path, 0o444 | x)
os.chmod(staging, 0o500)
if staging != final:
    remove(final)
    os.rename(staging, final)
report("ok", files=len(now))
"""


@dataclass(frozen=True)
class Verified:
    """What `VERIFY` found on the host."""

    state: str  # "missing", "ok" (in place, sealed) or "bad" (removed)
    files: int
    changes: tuple[str, ...]
    previous: str | None  # the host's newest other release of the service
    rsync: bool  # whether the host has rsync


def parse_verified(output: str) -> Verified:
    data = json.loads(output.strip().splitlines()[-1])
    return Verified(
        state=str(data["state"]),
        files=int(data.get("files", 0)),
        changes=tuple(str(c) for c in data.get("changes", ())),
        previous=data.get("previous"),
        rsync=bool(data.get("rsync")),
    )


def verify_argv(staging: PurePosixPath, final: PurePosixPath, digest: str) -> list[str]:
    return ["python3", "-S", "-", str(staging), str(final), digest]  # -S: stdlib only


def staging_dir(final: PurePosixPath) -> PurePosixPath:
    return final.parent / f".{final.name}.incoming"


def ssh_command(host: HostSpec, known_hosts: Path) -> str:
    """The `rsync -e` value: OpenSSH that checks the host key against the home's file only,
    never asks, and logs in with the host's identity."""
    argv = [
        "ssh",
        "-p",
        str(host.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=2",  # a host gone mid-copy is noticed in seconds, as by
        "-o",
        "ServerAliveCountMax=3",  # Conveyor's own connections (ssh.connection)
    ]
    if host.identity is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(host.identity)]
    return shlex.join(argv)


def rsync_argv(
    host: HostSpec,
    known_hosts: Path,
    local: Path,
    staging: PurePosixPath,
    previous: str | None,
    exclude: Sequence[str] = (),
) -> list[str]:
    """rsync of the release `local` into `staging` on the host, compressed, hard-linking
    the files of `previous` (an absolute path on the host) that did not change, leaving
    out the `exclude` paths (its dependencies in the store: each is sent by an rsync of
    its own, of the directory its symlink names)."""
    link = [f"--link-dest={previous}"] if previous else []
    return [
        "rsync",
        "--archive",
        "--delete",
        "--compress",
        "--hard-links",
        # Files compared by content, not by size and mtime: a build gives a file its
        # commit's time in whole seconds, so a same-size change committed in the same
        # second as the host's previous release was hard-linked from it (and the digest
        # check then refused the release).
        "--checksum",
        *link,
        *(f"--exclude=/{path}" for path in exclude),
        "--rsh",
        ssh_command(host, known_hosts),
        f"{local}/",
        f"{host.user}@{_bracketed(host.address)}:{staging}/",
    ]


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def clean_argv(staging: PurePosixPath, parents: Sequence[str] = ()) -> list[str]:
    """Remove what an interrupted shipment left in the staging directory; make the
    `parents` (relative) inside it, where the store's dependencies go first."""
    script = (
        's=$1; shift; chmod -R u+w "$s" 2>/dev/null; rm -rf "$s" && mkdir -p "$(dirname "$s")"'
        ' && for d; do mkdir -p "$s/$d" || exit 1; done'
    )
    return ["sh", "-c", script, "sh", str(staging), *parents]


def untar_argv(archive: PurePosixPath, staging: PurePosixPath) -> list[str]:
    """Unpack the shipped tarball into a fresh staging directory and delete the tarball."""
    script = 'mkdir -p "$2" && tar -xzf "$1" -C "$2"; s=$?; rm -f "$1"; exit $s'
    return ["sh", "-c", script, "sh", str(archive), str(staging)]
