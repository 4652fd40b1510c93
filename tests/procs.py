"""Real processes for the fault tests: a private Redis, a private PostgreSQL cluster,
a TCP proxy that can cut the storage off, and wardrobe's own API and worker."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, free_port, wait_port


def service_env(settings, broker: str, **extra) -> dict:
    """The environment for a wardrobe process on the test session's services (and `broker`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(
        WARDROBE_DATABASE_URL=settings.database_url,
        WARDROBE_BROKER_URL=broker,
        WARDROBE_STORAGE_URL=settings.storage_url,
        WARDROBE_S3_ENDPOINT_URL=settings.s3_endpoint_url,
        WARDROBE_DATA_DIR=settings.data_dir,
        WARDROBE_LOG_LEVEL="INFO",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


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


class PgCluster:
    """A throwaway PostgreSQL cluster on a free port (initdb as the postgres user)."""

    def __init__(self, _tmp: Path | None = None):
        import tempfile

        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bindirs:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = bindirs[-1]
        self.port = free_port()
        # not under pytest's tmp_path: the postgres user must be able to reach it
        tmp = Path(tempfile.mkdtemp(prefix="wardrobe-pg-"))
        self.root = tmp
        self.dir = tmp / "pg"
        self.dir.mkdir()
        self.sock = tmp / "pgsock"
        self.sock.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            for d in (tmp, self.dir, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-l", str(self.dir / "log"), "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-m", mode, "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


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


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def wait_for(pred, timeout: float, what: str, interval: float = 0.2, on_fail=lambda: ""):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{on_fail()}")
