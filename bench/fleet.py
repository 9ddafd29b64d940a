"""Deploying to many hosts: wall time for 5, 20 and 50 hosts, bytes on the wire for a
one-file change, and the CLI's peak memory; Capistrano 3 deploying the same release to
the same hosts in the same run as the anchor.

    .venv/bin/python bench/fleet.py [--sizes 5,20,50] [--files 200] [--no-capistrano]

Needs root (it makes the test hosts: `scripts/testhosts up MAX` in the set
`CONVEYOR_TESTHOSTS_SET`, default 0, and removes them at the end) and, for the
anchor, Capistrano 3 (`apt-get install capistrano`; without `cap` the anchor is
skipped with a message). Takes about 10 minutes for the default sizes.

For each size N, on the first N test hosts:

- a throwaway project of one service (a stdlib HTTP server and `--files` data
  files, about 8 MB on disk, 3 MB gzipped), `replicas: N` (one instance a host,
  rolling with `max_surge: 100%`: every host at once, zero downtime), its own
  Conveyor home, `conveyor hosts trust` and `conveyor setup` (not timed), then
  `conveyor build`;
- Conveyor: `conveyor deploy` of release v1 (hosts empty: the whole release
  ships), then of v2, which changes one file (timed: wall time of the CLI);
- Capistrano: `cap fleet deploy` of the same two sealed releases (a tar.gz of
  the release directory uploaded to every host, Capistrano's `releases/` and
  `current` layout, and a `deploy:restart` task that stops the old server, starts
  the new one and waits until it answers), interleaved with Conveyor's deploys.

Bytes on the wire are the test hosts' veth counters (`/sys/class/net/cvtK-hostN/
statistics`, both directions, everything: SSH, rsync and the health checks) summed
over the deploy. The CLI's CPU time (`ru_utime + ru_stime`, with the rsync and ssh
it ran) is the deployer's own cost: the test hosts are namespaces of this machine,
so everything the hosts do (sshd, supervisord, the apps) shares its CPUs, which real
hosts would not. Peak memory is the CLI's own `ru_maxrss` (`wait4`) and the sum of
the RSS of its process tree (rsync and ssh children), sampled every 50 ms. Per step
kind, the seconds each kind took come from the deployment's journal.

Writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.project import Project, cli_environment, free_port, git  # noqa: E402
from tests.support.testhosts import hosts_up  # noqa: E402

RESULTS = REPO / "bench" / "results" / "fleet.json"

TARGET_SCALING = 2.0  # 50 hosts in at most 2x the time of 5
TARGET_BYTES_PCT = 5.0  # one-file change vs the whole release
TARGET_RSS_MB = 150.0  # CLI peak at 50 hosts
CAP_PORT = 9400  # where Capistrano's server listens on each host

SERVER = '''\
"""The benchmark's app: answers /health and / with its release's version."""
import http.server, os, pathlib, socketserver

VERSION = pathlib.Path("VERSION").read_text().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        # Not HTTPServer's: its socket.getfqdn() waits for a DNS answer the test hosts'
        # namespaces never get (10 s).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
'''

CAPFILE = """\
require "shellwords"
require "capistrano/setup"
require "capistrano/deploy"
require_relative "release_copy"
install_plugin ReleaseCopy
"""

# An SCM plugin (Capistrano's documented extension point, as capistrano/scm/git is one)
# that "checks out" a release by uploading the sealed release as one tar.gz to each host.
RELEASE_COPY = """\
require "capistrano/scm/plugin"

class ReleaseCopy < Capistrano::SCM::Plugin
  def define_tasks
    namespace :release_copy do
      task :check do
      end
      task :create_release do
        archive = fetch(:release_archive)
        on release_roles(:all) do
          execute :mkdir, "-p", release_path
          # scp does not expand ~: its paths start in the login directory already.
          upload! archive, "#{release_path.to_s.delete_prefix("~/")}.tar.gz"
          execute :tar, "-xzf", "#{release_path}.tar.gz", "-C", release_path
          execute :rm, "-f", "#{release_path}.tar.gz"
        end
      end
      task :set_current_revision do
        set :current_revision, fetch(:release_version)
      end
    end
  end

  def register_hooks
    after "deploy:new_release_path", "release_copy:create_release"
    before "deploy:check", "release_copy:check"
    before "deploy:set_current_revision", "release_copy:set_current_revision"
  end
end
"""

DEPLOY_RB = """\
set :application, "fleetbench"
# Each host's own home (Capistrano leaves a leading ~ unquoted for the remote shell).
set :deploy_to, "~/cap-fleetbench"
set :keep_releases, 3
set :release_archive, ENV.fetch("RELEASE_ARCHIVE")
set :release_version, ENV.fetch("RELEASE_VERSION")
set :format, :dot
set :log_level, :warn

RESTART = <<~'SH'
  cd "$HOME/cap-fleetbench/current" || exit 1
  pid="$HOME/cap-fleetbench/shared/server.pid"
  [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null
  while ss -Htln "sport = :$1" | grep -q .; do sleep 0.05; done
  HOST=$2 PORT=$1 setsid nohup python3 server.py > ../../shared/server.log 2>&1 < /dev/null &
  echo $! > "$pid"
  until curl -sf "http://$2:$1/health" > /dev/null; do sleep 0.05; done
SH

namespace :deploy do
  desc "Restart the server: stop the old one, start the new one, wait until it answers"
  task :restart do
    on roles(:app) do |host|
      execute :sh, "-c", Shellwords.escape(RESTART), "sh", "#{PORT}", host.hostname
    end
  end
  after :publishing, :restart
end
"""


@dataclass
class Measured:
    wall: float
    max_rss_kb: int  # the CLI's own peak (and its biggest waited-for child's)
    tree_peak_kb: int  # the peak of the sum over its process tree, sampled
    cpu_s: float  # user + system CPU of the CLI and the children it waited for
    returncode: int
    stdout: str
    stderr: str


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _tree_rss_kb(root: int) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        todo.extend(_children(pid))
    return total


def run_measured(argv: list[str], cwd: Path, env: dict[str, str]) -> Measured:
    """Run `argv`; wall time, ru_maxrss from wait4(2), and the sampled peak of its tree."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _tree_rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall,
            usage.ru_maxrss,
            peak[0],
            usage.ru_utime + usage.ru_stime,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def checked(run: Measured, what: str) -> Measured:
    if run.returncode != 0:
        raise SystemExit(
            f"{what} exited {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
    return run


def conveyor_argv() -> list[str]:
    script = Path(sys.executable).with_name("conveyor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "conveyor"]


# -- test hosts ------------------------------------------------------------------------


def host_set() -> str:
    return os.environ.get("CONVEYOR_TESTHOSTS_SET", "0") or "0"


def veth(name: str) -> str:
    return f"cvt{'' if host_set() == '0' else host_set()}-{name}"


def wire_bytes(hosts: list[dict[str, Any]]) -> int:
    """Bytes through the hosts' veth interfaces so far, both directions."""
    total = 0
    for host in hosts:
        stats = Path("/sys/class/net") / veth(host["name"]) / "statistics"
        total += int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())
    return total


# -- the project -------------------------------------------------------------------------


def write_app(app: Path, files: int, version: str) -> None:
    """The app: server.py, VERSION and `files` data files of text (as compressible as
    source code is, about 30 KB each)."""
    rng = random.Random(14)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    (app / "data").mkdir(parents=True, exist_ok=True)
    for n in range(files):
        lines = (" ".join(rng.choice(words) for _ in range(12)) for _ in range(500))
        (app / "data" / f"part{n:03}.txt").write_text("\n".join(lines) + "\n")
    (app / "server.py").write_text(SERVER)
    (app / "VERSION").write_text(version + "\n")


def make_project(root: Path, size: int, inventory: Path, files: int) -> tuple[Path, dict[str, str]]:
    import yaml

    root.mkdir(parents=True)
    write_app(root / "app", files, "v1")
    listen = f"127.0.0.1:{free_port()}"
    config = {
        "project": f"fleetbench{size}",
        "services": {
            "web": {
                "source": "app",
                "run": ["python3", "server.py"],
                "replicas": size,
                "health": {
                    "type": "http",
                    "path": "/health",
                    "interval": "200ms",
                    "healthy_threshold": 1,
                },
                "stop_timeout": "5s",
                "drain_timeout": "5s",
                "deploy_timeout": "120s",
            }
        },
        "environments": {
            "fleet": {
                "listen": listen,
                "target": "ssh",
                "hosts": {"inventory": str(inventory)},
                "strategy": {"type": "rolling", "max_surge": "100%"},
            }
        },
    }
    (root / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "bench@example.com")
    git(root, "config", "user.name", "bench")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    env = cli_environment(root.parent / "home")
    env.pop("PYTHONPYCACHEPREFIX", None)
    return root, env


def build(root: Path, env: dict[str, str]) -> tuple[str, Path]:
    built = json.loads(
        checked(
            run_measured([*conveyor_argv(), "build", "--json"], root, env), "conveyor build"
        ).stdout
    )
    release = next(r for r in built if r["service"] == "web")
    home = Path(env["CONVEYOR_HOME"])
    return release["id"], home / "releases" / "web" / release["id"]


def step_seconds(home: Path, deployment: str) -> dict[str, float]:
    from conveyor.store import open_store

    by_kind: dict[str, float] = {}
    with open_store(f"sqlite:///{home / 'state.db'}") as store:
        for step in store.list_steps(deployment):
            if step.finished_at is not None:
                seconds = (step.finished_at - step.started_at).total_seconds()
                by_kind[step.kind] = by_kind.get(step.kind, 0.0) + seconds
    return {k: round(v, 3) for k, v in sorted(by_kind.items())}


def conveyor_deploy(
    root: Path, env: dict[str, str], release: str, hosts: list[dict[str, Any]]
) -> dict[str, Any]:
    before = wire_bytes(hosts)
    argv = [*conveyor_argv(), "deploy", "fleet", "-r", f"web={release}", "--json"]
    run = checked(run_measured(argv, root, env), "conveyor deploy")
    sent = wire_bytes(hosts) - before
    deployment = json.loads(run.stdout)
    if deployment.get("status") != "succeeded":
        raise SystemExit(f"deploy {deployment.get('id')} did not succeed: {deployment}")
    steps = step_seconds(Path(env["CONVEYOR_HOME"]), deployment["id"])
    return {
        "deployment": deployment["id"],
        "wall_s": round(run.wall, 2),
        "wire_bytes": sent,
        "max_rss_mb": round(run.max_rss_kb / 1024, 1),
        "tree_peak_rss_mb": round(run.tree_peak_kb / 1024, 1),
        "cli_cpu_s": round(run.cpu_s, 2),
        "steps_s": steps,
        "outside_steps_s": round(run.wall - sum(steps.values()), 2),
    }


# -- Capistrano --------------------------------------------------------------------------


def capistrano() -> str | None:
    return shutil.which("cap")


def make_capistrano(
    directory: Path, hosts: list[dict[str, Any]], identity: str, known_hosts: str
) -> None:
    (directory / "config" / "deploy").mkdir(parents=True)
    (directory / "Capfile").write_text(CAPFILE)
    (directory / "release_copy.rb").write_text(RELEASE_COPY)
    (directory / "config" / "deploy.rb").write_text(DEPLOY_RB.replace("#{PORT}", str(CAP_PORT)))
    servers = "".join(
        f'server "{h["address"]}", user: "{h["user"]}", port: {h["port"]}, roles: %w[app]\n'
        for h in hosts
    )
    options = (
        "set :ssh_options, {\n"
        f'  keys: ["{identity}"], keys_only: true, auth_methods: %w[publickey],\n'
        f'  user_known_hosts_file: "{known_hosts}", global_known_hosts_file: "/dev/null",\n'
        "  verify_host_key: :always, non_interactive: true,\n"
        "}\n"
    )
    (directory / "config" / "deploy" / "fleet.rb").write_text(servers + options)


def cap_deploy(
    directory: Path, release_dir: Path, version: str, hosts: list[dict[str, Any]]
) -> dict[str, Any]:
    archive = directory / f"{release_dir.name}.tar.gz"
    started = time.perf_counter()
    # Packing is part of Capistrano's deploy (Conveyor's build sealed the release; its
    # rsync compresses on the fly).
    subprocess.run(
        ["tar", "--mode=u+w", "-czf", str(archive), "-C", str(release_dir), "."], check=True
    )
    pack = time.perf_counter() - started
    env = {**os.environ, "RELEASE_ARCHIVE": str(archive), "RELEASE_VERSION": version}
    before = wire_bytes(hosts)
    run = checked(run_measured(["cap", "fleet", "deploy"], directory, env), "cap fleet deploy")
    sent = wire_bytes(hosts) - before
    return {
        "wall_s": round(pack + run.wall, 2),
        "pack_s": round(pack, 2),
        "wire_bytes": sent,
        "archive_bytes": archive.stat().st_size,
        "max_rss_mb": round(run.max_rss_kb / 1024, 1),
    }


def answers(address: str, port: int, want: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as response:
        return bool(response.read().decode().strip() == want)


def stop_capistrano_servers(hosts: list[dict[str, Any]]) -> None:
    for host in hosts:
        pidfile = Path(f"/home/{host['user']}/cap-fleetbench/shared/server.pid")
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), 15)


def stop_conveyor(root: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [*conveyor_argv(), "down", "fleet", "--yes"],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=600,
    )
    # The router (Caddy) runs under the home's own supervisord on this machine: stop it,
    # as the end-to-end tests' Project.shutdown does.
    Project(root, Path(env["CONVEYOR_HOME"]), env).shutdown()


# -- one size ----------------------------------------------------------------------------


def bench_size(
    size: int, tmp: Path, inventory: dict[str, Any], files: int, with_cap: bool
) -> dict[str, Any]:
    hosts = inventory["hosts"][:size]
    subset = tmp / f"inventory-{size}.json"
    subset.write_text(json.dumps({**inventory, "hosts": hosts}))
    root, env = make_project(tmp / f"fleet{size}" / "project", size, subset, files)
    cli = conveyor_argv()
    checked(run_measured([*cli, "hosts", "trust", "fleet", "--yes"], root, env), "hosts trust")
    setup = checked(run_measured([*cli, "setup", "fleet"], root, env), "setup")
    v1, v1_dir = build(root, env)
    (root / "app" / "VERSION").write_text("v2\n")  # the one-file change
    git(root, "commit", "-qam", "v2")
    v2, v2_dir = build(root, env)
    release_bytes = sum(p.stat().st_size for p in v1_dir.rglob("*") if p.is_file())
    print(
        f"\n{size} hosts: release {release_bytes / 1e6:.1f} MB on disk, "
        f"{sum(1 for _ in v1_dir.rglob('*'))} entries; setup {setup.wall:.1f} s"
    )

    cap_dir = tmp / f"fleet{size}" / "capistrano"
    if with_cap:
        make_capistrano(cap_dir, hosts, inventory["identity"], inventory["known_hosts"])
    result: dict[str, Any] = {
        "hosts": size,
        "release_bytes": release_bytes,
        "setup_s": round(setup.wall, 2),
    }
    try:
        for label, release, release_dir, version in (
            ("v1", v1, v1_dir, "v1"),
            ("v2", v2, v2_dir, "v2"),
        ):
            conveyor = conveyor_deploy(root, env, release, hosts)
            result[f"conveyor_{label}"] = conveyor
            line = (
                f"  conveyor deploy {label}: {conveyor['wall_s']:6.2f} s, "
                f"{conveyor['wire_bytes'] / 1e6:7.2f} MB on the wire, "
                f"CLI {conveyor['max_rss_mb']:.0f} MB "
                f"(tree {conveyor['tree_peak_rss_mb']:.0f} MB), "
                f"CLI CPU {conveyor['cli_cpu_s']:.1f} s"
            )
            print(line)
            print(
                f"    steps: {conveyor['steps_s']}; outside steps {conveyor['outside_steps_s']} s"
            )
            if with_cap:
                cap = cap_deploy(cap_dir, release_dir, version, hosts)
                result[f"capistrano_{label}"] = cap
                bad = [h["name"] for h in hosts if not answers(h["address"], CAP_PORT, version)]
                if bad:
                    raise SystemExit(f"capistrano's servers do not answer {version} on {bad}")
                print(
                    f"  cap deploy {label}:      {cap['wall_s']:6.2f} s, "
                    f"{cap['wire_bytes'] / 1e6:7.2f} MB on the wire "
                    f"(tar.gz {cap['archive_bytes'] / 1e6:.2f} MB, packing {cap['pack_s']} s); "
                    f"ratio Conveyor/Capistrano {conveyor['wall_s'] / cap['wall_s']:.2f}"
                )
    finally:
        stop_conveyor(root, env)
        if with_cap:
            stop_capistrano_servers(hosts)
    return result


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,20,50", help="host counts, comma-separated")
    parser.add_argument("--files", type=int, default=200, help="data files in the release")
    parser.add_argument("--no-capistrano", action="store_true", help="skip the anchor")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    with_cap = not args.no_capistrano and capistrano() is not None
    if not args.no_capistrano and not with_cap:
        print(
            "Capistrano anchor SKIPPED: `cap` is not installed "
            "(as root: apt-get install -y --no-install-recommends capistrano)"
        )
    if os.geteuid() != 0:
        raise SystemExit("bench/fleet.py needs root: it makes test hosts (scripts/testhosts)")

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="conveyor-fleet-"))
    os.chmod(tmp, 0o755)
    results = []
    try:
        with hosts_up(max(sizes), tmp / "hosts", timeout=600) as hosts:
            inventory = json.loads(hosts.path.read_text())
            for size in sizes:
                results.append(bench_size(size, tmp, inventory, args.files, with_cap))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nhosts  Conveyor v1  Capistrano v1  ratio   Conveyor v2  Capistrano v2  ratio")
    for r in results:
        row = f"{r['hosts']:>5}"
        for label in ("v1", "v2"):
            c = r[f"conveyor_{label}"]["wall_s"]
            cap = r.get(f"capistrano_{label}", {}).get("wall_s")
            row += f"  {c:10.2f}s" + (f"  {cap:12.2f}s  {c / cap:5.2f}" if cap else "  " + "-" * 20)
        print(row)
    small, large = results[0], results[-1]
    scaling = large["conveyor_v2"]["wall_s"] / small["conveyor_v2"]["wall_s"]
    scaling_v1 = large["conveyor_v1"]["wall_s"] / small["conveyor_v1"]["wall_s"]
    byte_pct = 100 * large["conveyor_v2"]["wire_bytes"] / large["conveyor_v1"]["wire_bytes"]
    rss = large["conveyor_v2"]["max_rss_mb"]
    rss = max(rss, large["conveyor_v1"]["max_rss_mb"])
    print(
        f"\n{large['hosts']} hosts vs {small['hosts']}: {scaling:.2f}x (v2, one file changed), "
        f"{scaling_v1:.2f}x (v1, whole release)   target <= {TARGET_SCALING:g}x: "
        f"{mark(max(scaling, scaling_v1) <= TARGET_SCALING)}"
    )
    cpu_small = small["conveyor_v2"]["cli_cpu_s"]
    cpu_large = large["conveyor_v2"]["cli_cpu_s"]
    print(
        f"the deployer's own CPU (the CLI, its rsync and ssh), v2: {cpu_small:.1f} s at "
        f"{small['hosts']} hosts, {cpu_large:.1f} s at {large['hosts']} "
        f"({cpu_large / cpu_small:.1f}x); the rest of the hosts' work shares these "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"bytes on the wire, one-file change vs whole release ({large['hosts']} hosts): "
        f"{byte_pct:.2f} %   target < {TARGET_BYTES_PCT:g} %: {mark(byte_pct < TARGET_BYTES_PCT)}"
    )
    tree = max(large["conveyor_v1"]["tree_peak_rss_mb"], large["conveyor_v2"]["tree_peak_rss_mb"])
    print(
        f"CLI peak RSS at {large['hosts']} hosts: {rss:.0f} MB (process tree {tree:.0f} MB)"
        f"   target < {TARGET_RSS_MB:g} MB: {mark(rss < TARGET_RSS_MB)}"
    )

    report = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "sizes": results,
        "targets": {
            "scaling": {
                "target": TARGET_SCALING,
                "v2": round(scaling, 2),
                "v1": round(scaling_v1, 2),
            },
            "bytes_pct": {"target": TARGET_BYTES_PCT, "value": round(byte_pct, 3)},
            "peak_rss_mb": {"target": TARGET_RSS_MB, "value": rss},
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nload average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{os.cpu_count()} CPUs\nwrote {RESULTS.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
