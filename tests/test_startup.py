"""What a Conveyor command imports at start: httpx's own command line (rich, pygments,
click's help machinery) is left out, and httpx works without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

REPORT = textwrap.dedent(
    """
    import json, sys
    import conveyor.engine.deployments  # the deploy path: health checks use httpx
    import httpx
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(204)))
    status = client.get("http://example.invalid/health").status_code
    try:
        httpx.main()
        refused = ""
    except SystemExit as exit:
        refused = str(exit)
    loaded = [m for m in ("rich", "pygments") if m in sys.modules]
    if "stand-in" not in (sys.modules["httpx._main"].__doc__ or ""):
        loaded.append("httpx._main")
    print(json.dumps({"status": status, "refused": refused, "loaded": loaded}))
    """
)


def test_the_deploy_path_does_not_load_httpx_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", REPORT], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(done.stdout)
    assert report["status"] == 204  # httpx itself works
    assert report["loaded"] == []  # neither rich nor pygments nor the real httpx._main
    assert "run `httpx` itself" in report["refused"]
