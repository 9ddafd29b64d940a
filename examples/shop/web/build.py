"""Build the front end: copy src/ to dist/, stamping the release id into HTML files.

The release id comes from CONVEYOR_RELEASE at build time ("dev" without it),
so every release carries its own id in the page it serves.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(src: Path = HERE / "src", dist: Path = HERE / "dist") -> None:
    release = os.environ.get("CONVEYOR_RELEASE") or "dev"
    if dist.exists():
        shutil.rmtree(dist)
    for file in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dist / file.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix == ".html":
            text = file.read_text().replace("{{release}}", html.escape(release))
            target.write_text(text)
        else:
            shutil.copyfile(file, target)
    (dist / "build.json").write_text(json.dumps({"release": release}) + "\n")
    print(f"built {dist} for release {release}")


if __name__ == "__main__":
    build()
