"""Who is acting: recorded on every build, deploy, rollback and lock."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess


def current_user() -> str:
    """`CONVEYOR_USER`, else git's `user.email`, else the OS user."""
    explicit = os.environ.get("CONVEYOR_USER", "").strip()
    if explicit:
        return explicit
    git = shutil.which("git")
    if git:
        try:
            out = subprocess.run(
                [git, "config", "user.email"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
