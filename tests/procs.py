"""Real processes for the fault tests: a private PostgreSQL cluster, and (from bench.procs) a private Redis,
a TCP proxy that can cut the storage off, and wardrobe's own API and worker."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from bench.procs import Proc, RedisServer, TcpProxy, close_both  # noqa: F401 - the tests import them from here
from bench.scratch import free_port


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
