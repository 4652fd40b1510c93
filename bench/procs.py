"""Real processes for the benchmarks and the fault tests: wardrobe's own API and worker (`Proc`), a
private Redis, and a TCP proxy that can cut a service off."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from bench.scratch import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]


def wait_ready(url: str, workers: int, timeout: float, detail: Callable[[], str] = lambda: "") -> None:
    """Until the API at `url` answers /readyz with at least `workers` Celery workers answering; exits
    the benchmark with `detail()` (e.g. the processes' log tails) after `timeout` seconds."""
    import requests

    t0 = time.monotonic()
    while True:
        try:
            if requests.get(f"{url}/readyz", timeout=5).json().get("workers", {}).get("answering", 0) >= workers:
                return
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the API and {workers} workers did not come up\n{detail()}".rstrip())
        time.sleep(0.5)


class Proc:
    """A wardrobe command in its own process group, restartable and killable."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.args, self.env, self.log = args, env, log
        self.p: subprocess.Popen | None = None

    def start(self) -> "Proc":
        out = open(self.log, "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "cli.main", *self.args], env=self.env, cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.p and self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


class RedisServer:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.tmp = tmp
        self.p: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.p = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.tmp)], stdout=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.p:
            self.p.kill()
            self.p.wait(10)


def close_both(*socks: socket.socket) -> None:
    """Shut a proxied connection both ways (the peer sees it cut) and close its sockets."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; while `down`, connections are accepted and dropped."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.down = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            for a, b, upstream in ((c, u, True), (u, c, False)):
                threading.Thread(target=self._pipe, args=(a, b, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, upstream: bool) -> None:
        try:
            while not (self.down and self.closed):
                data = a.recv(65536)
                if not data or self.down:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            close_both(a, b)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
