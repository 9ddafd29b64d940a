"""Run a one-off command in a service's current release, with its instances' environment.

A stand-in for `conveyor run ENV SERVICE -- COMMAND` until that command
exists: the release's directory, the environment Conveyor gives its
instances and migrations (`release_env`: the config's env, DATA_DIR,
CONVEYOR_*), the few variables supervisord passes through, and `extra`.

    python -m tests.support.one_off ENV SERVICE RELEASE [NAME=VALUE ...] -- COMMAND...
"""

from __future__ import annotations

import os
import subprocess
import sys

PASSED = ("PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "TMPDIR", "SHELL")


def main(argv: list[str]) -> int:
    from conveyor.config.loader import load_config
    from conveyor.engine.executor import release_env
    from conveyor.engine.runtime import Runtime

    split = argv.index("--")
    (environment, service, release, *assignments), command = argv[:split], argv[split + 1 :]
    rt = Runtime.open(load_config(), user="tester@example.com")
    record = rt.store.get_release(service, release)
    if record is None:
        print(f"no release {release} of {service}", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k in PASSED or k.startswith("LC_")}
    env.update(release_env(rt, environment, service, release))
    env.update(a.split("=", 1) for a in assignments)
    return subprocess.run(command, cwd=record.path, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
