"""The shop front end: the files `python3 build.py` put in dist/, plus /health and /version.

Run: PORT=8001 python3 server.py (from the release directory, where an optional
faults.json is read). Standard library only.
"""

from __future__ import annotations

import json
import mimetypes
import sys
from pathlib import Path
from urllib.parse import unquote

try:
    import shopkit
except ImportError:  # run from the source tree: the release build copies it in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shared"))
    import shopkit

DIST = Path(__file__).resolve().parent / "dist"


class WebHandler(shopkit.Handler):
    service = "web"

    def health(self) -> tuple[int, str]:
        if not (DIST / "index.html").is_file():
            return 503, "dist/index.html is missing: run python3 build.py\n"
        return super().health()

    def version(self) -> dict[str, object]:
        info = super().version()
        try:
            info["built_for"] = json.loads((DIST / "build.json").read_text())["release"]
        except (OSError, ValueError, KeyError):
            info["built_for"] = None
        return info

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        file = (DIST / unquote(path).lstrip("/")).resolve()
        if file.is_dir():
            file = file / "index.html"
        if method != "GET" or not file.is_relative_to(DIST) or not file.is_file():
            return super().route(method, path, query)
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/javascript":
            ctype += "; charset=utf-8"
        return 200, ctype, file.read_bytes()


if __name__ == "__main__":
    shopkit.run(WebHandler, default_port=8001)
