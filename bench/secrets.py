"""What resolving secrets costs a deploy: 50 secrets from the encrypted file, against
the same 50 read from the environment, measured in the same run.

    .venv/bin/python bench/secrets.py [--runs 30]

A throwaway project (conveyor.yml, its age key in a temporary XDG_CONFIG_HOME,
secrets/production.age with 50 values of 40 characters) is resolved as a deploy
does it (`conveyor.secrets.resolve.resolve`: key, decrypt, parse, register for
masking):

(a) cold, as a CLI command pays it once: a fresh interpreter per run, the time
    of the first resolution including the imports it needs (pyrage), against a
    fresh interpreter resolving 50 `{env: VAR}` secrets;
(b) warm: the same resolution repeated in one process, both kinds interleaved;
(c) masking: `redact_registered` on a 1 KiB line once the 50 values (and their
    JSON forms) are registered, against no secret registered.

Prints the figures with PASS/MISS against the target (cold, encrypted: < 100 ms
median) and writes bench/results/secrets.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file's name hides the standard library's `secrets` from what it imports: its
# directory (first on sys.path when run as a script) is taken off.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "secrets.json"
COUNT = 50
TARGET_MS = 100.0

CHILD = """\
import sys, time
from pathlib import Path
started = time.perf_counter()
from conveyor.config import load_config
loaded = load_config(Path(sys.argv[1]), defer_unset=True)
ready = time.perf_counter()
from conveyor.secrets.resolve import resolve
values = resolve(loaded, sys.argv[2])
done = time.perf_counter()
assert len(values) == int(sys.argv[3]), len(values)
print((done - ready) * 1000)
"""


def make_project(tmp: Path) -> tuple[Path, dict[str, str]]:
    """conveyor.yml with two environments: `production` (50 encrypted secrets) and
    `envs` (the same 50 names from the environment); the env values to set."""
    from conveyor.secrets import keys, vault

    names = [f"SECRET_{i:02d}" for i in range(COUNT)]
    values = {n: base64.urlsafe_b64encode(os.urandom(30)).decode() for n in names}
    encrypted = "\n".join(f"      {n}: encrypted" for n in names)
    from_env = "\n".join(f"      {n}: {{env: BENCH_{n}}}" for n in names)
    config = tmp / "conveyor.yml"
    config.write_text(
        "project: benchsecrets\n"
        "services:\n  web:\n    run: [python3, app.py]\n    route: {path: /}\n"
        "environments:\n"
        f"  production:\n    listen: 127.0.0.1:18901\n    secrets:\n{encrypted}\n"
        f"  envs:\n    listen: 127.0.0.1:18902\n    secrets:\n{from_env}\n"
    )
    _, identity, _ = keys.write_new_key("benchsecrets")
    vault.write(tmp, "production", values, identity)
    return config, {f"BENCH_{n}": v for n, v in values.items()}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figure(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p90_ms": round(percentile(samples, 0.9), 3),
        "min_ms": round(min(samples), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-bench-secrets-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ.pop("CONVEYOR_AGE_KEY", None)
    os.environ.pop("CONVEYOR_AGE_KEY_FILE", None)
    sys.path.insert(0, str(REPO / "src"))
    config, env_values = make_project(tmp)
    child_env = {**os.environ, **env_values}

    def cold(environment: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(config), environment, str(COUNT)],
            env=child_env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout)

    cold_encrypted: list[float] = []
    cold_env: list[float] = []
    for _ in range(args.runs):
        cold_encrypted.append(cold("production"))
        cold_env.append(cold("envs"))

    from conveyor.config import load_config
    from conveyor.redaction import forget_secrets, redact_registered
    from conveyor.secrets.resolve import resolve

    os.environ.update(env_values)
    loaded = load_config(config, defer_unset=True)
    warm_encrypted: list[float] = []
    warm_env: list[float] = []
    for _ in range(args.runs):
        for environment, samples in (("production", warm_encrypted), ("envs", warm_env)):
            started = time.perf_counter()
            resolve(loaded, environment)
            samples.append((time.perf_counter() - started) * 1000)

    line = ("deploy step 3 migrate database main: output line of a command " * 20)[:1024]
    masked: list[float] = []
    unmasked: list[float] = []
    for samples, registered in ((masked, True), (unmasked, False)):
        if not registered:
            forget_secrets()
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in range(1000):
                redact_registered(line)
            samples.append(time.perf_counter() - started)  # ms per call: s/1000 calls * 1000

    result = {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "secrets": COUNT,
        "runs": args.runs,
        "cold_encrypted": figure(cold_encrypted),
        "cold_env_baseline": figure(cold_env),
        "warm_encrypted": figure(warm_encrypted),
        "warm_env_baseline": figure(warm_env),
        "mask_1KiB_line_us": {
            "registered_50": round(statistics.median(masked) * 1000, 3),
            "none_registered": round(statistics.median(unmasked) * 1000, 3),
        },
        "target_ms": TARGET_MS,
    }
    verdict = "PASS" if result["cold_encrypted"]["median_ms"] < TARGET_MS else "MISS"
    ce, cb = result["cold_encrypted"], result["cold_env_baseline"]
    we, wb = result["warm_encrypted"], result["warm_env_baseline"]
    mask = result["mask_1KiB_line_us"]
    print(f"resolving {COUNT} secrets, {args.runs} runs each (median / p90):")
    print(
        f"  cold, encrypted file:   {ce['median_ms']:.1f} / {ce['p90_ms']:.1f} ms  "
        f"[{verdict}: target < {TARGET_MS:.0f} ms]"
    )
    print(f"  cold, environment:      {cb['median_ms']:.1f} / {cb['p90_ms']:.1f} ms  (baseline)")
    print(f"  warm, encrypted file:   {we['median_ms']:.2f} / {we['p90_ms']:.2f} ms")
    print(f"  warm, environment:      {wb['median_ms']:.2f} / {wb['p90_ms']:.2f} ms  (baseline)")
    print(
        f"  masking a 1 KiB line:   {mask['registered_50']:.1f} us with {COUNT} registered, "
        f"{mask['none_registered']:.2f} us with none"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
