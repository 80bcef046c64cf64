"""Cluster mode in one command: Redis, N server workers and nginx on PORT.

    WORKERS=2 python -m scripts.cluster          # or: WORKERS=2 ./scripts/run.sh
    python -m scripts.cluster --print-nginx --listen 80 --worker w0=10.0.0.2:8000 ...

One eventlet process uses one core, so cluster mode runs WORKERS single-process servers
(`python -m server`, each with its own batcher) on internal 127.0.0.1 ports, a private
Redis (127.0.0.1, a free port, a temporary directory, no persistence) for the Socket.IO
message queue and the cluster-wide figures, and nginx on HOST:PORT routing each session to
its worker (see deploy/nginx.conf.template). REDIS_URL uses an existing Redis instead.

Supervision: any part that dies is restarted. A dead worker's clients reconnect through
nginx to a live worker meanwhile; while Redis is down workers keep answering their own
sessions (only the cluster figures go stale). A part that keeps dying (a crash loop) stops
everything with exit code 1.
SIGTERM or Ctrl+C stops everything in order: workers drain (queued predicts answered,
clients told to reconnect), then nginx, then Redis. Children run in their own process
group (a terminal's Ctrl+C reaches only this process, which orders the stop) and get
SIGTERM if this process dies without cleaning up, so nothing is ever orphaned.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
STARTUP_TIMEOUT_S = 60.0
POLL_S = 0.2
RESTART_DELAY_S = 1.0
MAX_RESTARTS, CRASH_WINDOW_S = 5, 60.0  # more restarts than this in the window: give up
STOP_TIMEOUT_S = 20.0  # a worker's drain (SHUTDOWN_TIMEOUT_S) plus its close grace
EXIT_FAILED = 1
PR_SET_PDEATHSIG = 1


class ClusterError(RuntimeError):
    """A part that cannot start; the message is one actionable sentence."""


class StopRequested(ClusterError):
    """SIGTERM or Ctrl+C before everything was up: a clean stop, not a failure."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def render_nginx(workers: dict[str, str], listen: str, run_dir: Path, max_body: int) -> str:
    """The nginx config for `workers` ({worker id: "host:port"}) listening on `listen`."""
    routes = "\n".join(f"        ~^{wid}\\. digits_{wid};" for wid in workers)
    servers = "\n".join(
        f"        server {address} max_fails=1 fail_timeout=2s;" for address in workers.values()
    )
    upstreams = "\n".join(
        f"    upstream digits_{wid} {{\n        server {address};\n        keepalive 8;\n    }}"
        for wid, address in workers.items()
    )
    values = {
        "RUN_DIR": str(run_dir),
        "LISTEN": listen,
        "MAX_CONNECTIONS": "8192",
        "MAX_BODY": str(max_body),
        "SID_ROUTES": routes,
        "ANY_SERVERS": servers,
        "WORKER_UPSTREAMS": upstreams,
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the launcher dies (even by SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic times of recent restarts

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self) -> None:
        if self.alive():
            self.proc.send_signal(self.stop_signal)

    def wait(self, timeout: float) -> None:
        """Wait for the exit; SIGKILL (and reap) whatever outlives `timeout`."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            print(f"cluster: {self.name} did not stop in time; killing it", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    def __init__(
        self,
        workers: int,
        host: str,
        port: int,
        redis_url: str | None = None,
        run_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        if workers < 1:
            raise ClusterError(f"WORKERS must be 1 or more, not {workers}")
        self.host, self.port = host, port
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="digits-cluster-"))
        self.own_run_dir = run_dir is None
        self.redis: Child | None = None
        if redis_url is None:
            redis_port = free_port()
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            self.redis = Child(
                "redis",
                [
                    _binary("redis-server", "apt-get install redis-server"),
                    "--bind", "127.0.0.1",
                    "--port", str(redis_port),
                    "--dir", str(self.run_dir),
                    "--save", "",
                    "--appendonly", "no",
                    "--protected-mode", "yes",
                ],
                self.run_dir / "redis.log",
            )  # fmt: skip
        self.redis_url = redis_url
        self.workers = [
            Child(
                f"w{i}",
                [python, "-m", "server"],
                self.run_dir / f"worker-w{i}.log",
                env={
                    "HOST": "127.0.0.1",
                    "PORT": str(free_port()),
                    "WORKER_ID": f"w{i}",
                    "MESSAGE_QUEUE": redis_url,
                    "MAX_SESSIONS_PER_IP": "0",  # behind nginx every client is 127.0.0.1
                },
            )
            for i in range(workers)
        ]
        self.nginx = Child(
            "nginx",
            [
                _binary("nginx", "apt-get install nginx"),
                "-p", str(self.run_dir),
                "-c", str(self.run_dir / "nginx.conf"),
                "-e", str(self.run_dir / "nginx-error.log"),
            ],
            self.run_dir / "nginx.log",
            stop_signal=signal.SIGQUIT,  # graceful: finish the requests in flight
        )  # fmt: skip
        self.stopping: int | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Redis, then the workers (all healthy), then nginx; ClusterError if a part fails."""
        if self.redis is not None:
            self.redis.start()
            self._wait_redis()
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            self._wait_healthy(worker, f"http://{self._address(worker)}/healthz")
        max_body = 2 * _max_payload_bytes() + 64 * 1024  # as the workers' Socket.IO buffer
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        config = render_nginx(
            {w.name: self._address(w) for w in self.workers}, listen, self.run_dir, max_body
        )
        (self.run_dir / "nginx.conf").write_text(config)
        self.nginx.start()
        self._wait_healthy(self.nginx, f"{self.url}/healthz")

    def supervise(self) -> int:
        """Until a stop signal: restart any part that dies; give up on a crash loop."""
        while self.stopping is None:
            for part in self.parts():
                if part.alive():
                    continue
                now = time.monotonic()
                part.restarts = [t for t in part.restarts if now - t < CRASH_WINDOW_S]
                if len(part.restarts) >= MAX_RESTARTS:
                    print(
                        f"cluster: {part.name} keeps exiting ({len(part.restarts)} restarts in "
                        f"{CRASH_WINDOW_S:g} s); stopping\n{part.tail()}",
                        file=sys.stderr,
                    )
                    return EXIT_FAILED
                print(
                    f"cluster: {part.name} exited with {part.proc.returncode}; restarting",
                    file=sys.stderr,
                )
                part.restarts.append(now)
                time.sleep(RESTART_DELAY_S)
                part.start()
            time.sleep(POLL_S)
        print(f"cluster: {signal.Signals(self.stopping).name}: stopping")
        return 0

    def parts(self) -> list[Child]:
        return [p for p in (self.redis, *self.workers, self.nginx) if p is not None]

    def stop(self) -> None:
        """Workers drain first (nginx still carries their last answers), then nginx, Redis."""
        for worker in self.workers:
            worker.signal()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers:
            worker.wait(deadline - time.monotonic())
        for part in (self.nginx, self.redis):
            if part is not None:
                part.signal()
                part.wait(5.0)
        if self.own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def on_signal(self, signum: int, frame: object) -> None:
        self.stopping = self.stopping or signum

    def _address(self, worker: Child) -> str:
        return f"127.0.0.1:{worker.env['PORT']}"

    def _wait_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=1.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(self.redis)
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise ClusterError(f"redis did not answer within {STARTUP_TIMEOUT_S:g} s")

    def _wait_healthy(self, part: Child, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_started(part)
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise ClusterError(f"{part.name} did not answer {url} within {STARTUP_TIMEOUT_S:g} s")

    def _check_started(self, part: Child) -> None:
        if self.stopping is not None:
            raise StopRequested(f"stopped by {signal.Signals(self.stopping).name} while starting")
        if not part.alive():
            raise ClusterError(
                f"{part.name} exited with {part.proc.returncode} while starting:\n{part.tail()}"
            )


def _max_payload_bytes() -> int:
    text = os.environ.get("MAX_PAYLOAD_BYTES", "1000000")
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise ClusterError(f"MAX_PAYLOAD_BYTES must be an integer, not {text!r}") from None


def _binary(name: str, install: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ClusterError(f"{name} is not installed; cluster mode needs it ({install})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("WORKERS", "2")), help="($WORKERS)"
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"), help="($HOST)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "7860")), help="($PORT)"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL"), help="existing Redis ($REDIS_URL)"
    )
    parser.add_argument(
        "--print-nginx",
        action="store_true",
        help="only print an nginx config for --worker ID=HOST:PORT ... (several machines)",
    )
    parser.add_argument("--worker", action="append", default=[], metavar="ID=HOST:PORT")
    parser.add_argument("--listen", default="7860", help="nginx listen (with --print-nginx)")
    parser.add_argument(
        "--run-dir", help="keep configs and logs here (default: a temporary dir, removed)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # status lines reach a log or pipe at once
    if args.print_nginx:
        workers = dict(spec.split("=", 1) for spec in args.worker)
        if not workers:
            print("cluster: --print-nginx needs --worker ID=HOST:PORT", file=sys.stderr)
            return 2
        run_dir = Path(args.run_dir or "/var/lib/digits-nginx")
        print(render_nginx(workers, args.listen, run_dir, 2_065_536))
        return 0
    try:
        run_dir = Path(args.run_dir).resolve() if args.run_dir else None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
        cluster = Cluster(args.workers, args.host, args.port, args.redis_url, run_dir)
    except ClusterError as e:
        print(f"cluster: error: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, cluster.on_signal)
    signal.signal(signal.SIGINT, cluster.on_signal)
    code = 0
    try:
        cluster.start()
        pids = " ".join(f"{w.name}={w.pid}" for w in cluster.workers)
        print(
            f"cluster: ready on {cluster.url} ({len(cluster.workers)} workers: {pids}; "
            f"redis {cluster.redis_url}; logs in {cluster.run_dir})",
            flush=True,
        )
        code = cluster.supervise()
    except StopRequested as e:
        print(f"cluster: {e}", flush=True)
    except ClusterError as e:
        print(f"cluster: error: {e}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        cluster.stop()
    print("cluster: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
