"""The Conveyor home's known_hosts file: host keys recorded by `conveyor hosts trust`.

OpenSSH's format (`name keytype base64`), one line per host key, so `ssh -o
UserKnownHostsFile=...` reads it too. Keys are only ever added by an explicit trust
(after the fingerprint was shown); a connection to a host whose key is missing or
different is refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line (`keytype base64 [comment]`).

    >>> key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBk4OrTSbEUi0ftI1tL8y9rGXLV9qPBAT8sQMk9rW2vQ"
    >>> fingerprint(key)
    'SHA256:bjQsYfSOK/Ufv4ZO6rLOyOneY6uHsAdexVHkFmFEDwE'
    """
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def recorded(path: Path, key_name: str) -> list[str]:
    """The key lines (`keytype base64`) recorded for `key_name`."""
    if not path.exists():
        return []
    keys = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#") and key_name in parts[0].split(","):
            keys.append(f"{parts[1]} {parts[2]}")
    return keys


def record(path: Path, key_name: str, key_line: str) -> bool:
    """Add `key_line` for `key_name` unless it is there; True if it was added. A host's
    other recorded keys are replaced (a trust after a changed key)."""
    keys = recorded(path, key_name)
    wanted = " ".join(key_line.split()[:2])
    if keys == [wanted]:
        return False
    kept = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and key_name in parts[0].split(","):
                continue
            kept.append(line)
    kept.append(f"{key_name} {wanted}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("\n".join(kept) + "\n")
    os.chmod(temporary, 0o600)  # noqa: PTH101
    temporary.replace(path)
    return True
