"""Reading `conveyor.yml` from disk: regular files only, of a bounded size.

`--config /dev/zero` would otherwise be read until memory runs out, and a FIFO
or `/dev/urandom` would block or never end. Imports neither pydantic nor YAML
(`conveyor status` reads the file through this before deciding to load it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conveyor.config.limits import MAX_FILE_BYTES
from conveyor.errors import ConfigError

__all__ = ["read_config_text"]

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}

_HINT = "pass --config the path of a conveyor.yml file"


def read_config_text(path: Path, source: str) -> str:
    """The text of the config file at `path`; `ConfigError` (naming `source`) when it is
    missing, not a regular file, larger than `MAX_FILE_BYTES` or not UTF-8."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=source, hint=_HINT) from None
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], source=source) from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise ConfigError(
                [f"{kind}, not a regular file: Conveyor reads its config from a file"],
                source=source,
                hint=_HINT,
            )
        try:
            data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError([f"cannot read the file: {exc.strerror}"], source=source) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            [
                f"larger than {MAX_FILE_BYTES // 1024} KiB: a conveyor.yml is a few KiB "
                "(is this the right file?)"
            ],
            source=source,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(["the file is not UTF-8 text"], source=source) from None
