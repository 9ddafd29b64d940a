"""Which page a health check should ask for, from the routes a Flask or FastAPI app declares."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Pages that answer without a database, preferred in this order; "/" last, as an
# index page often lists rows (the Flask tutorial's needs `init-db` first).
PREFERRED = ("/health", "/healthz", "/healthcheck", "/ping", "/status", "/hello", "/")

_ROUTE = re.compile(r"""@(\w+)\.(?:route|get)\(\s*["']([^"'<{]*)["']""")
_PREFIX = re.compile(r"""(\w+)\s*=\s*(?:Blueprint|APIRouter)\([^)]*prefix\s*=\s*["']([^"']*)["']""")


def declared_routes(files: Iterable[Path]) -> list[str]:
    """Literal GET paths of `@x.route("...")` / `@x.get("...")`, with blueprint prefixes."""
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        prefixes = dict(_PREFIX.findall(text))
        for owner, route in _ROUTE.findall(text):
            full = prefixes.get(owner, "").rstrip("/") + (route if route.startswith("/") else "")
            found.append(full or "/")
    return found


def health_path(files: Iterable[Path], default: str) -> str:
    """The preferred declared page, else `default`."""
    routes = set(declared_routes(files))
    return next((p for p in PREFERRED if p in routes), default)
