"""A real PostgreSQL server for the tests, started from the machine's own binaries in a temporary directory.

`make test` (through `scripts/system-deps`) installs Debian's postgresql package when no
``initdb`` is found. PostgreSQL refuses to run as root; as root the server runs as the
``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from servers import free_port


def binaries() -> Path:
    """The folder holding initdb and postgres; an error that says how to install them when there is none."""
    found = shutil.which("initdb")
    if found and Path(found).with_name("postgres").exists():
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    raise RuntimeError("no PostgreSQL server binaries (initdb): run `make system-deps` (apt-get install postgresql)")


def _as_server_user() -> dict:
    """Popen arguments that run a command as the postgres user when the tests run as root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return {"preexec_fn": demote}


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server on 127.0.0.1 with a database ``multishap``; yields its SQLAlchemy URL."""
    bin_dir = binaries()
    root = Path(tempfile.mkdtemp(prefix="multishap-pg-"))
    data = root / "data"
    demote = _as_server_user()
    if demote:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "multishap", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, **demote)
    port = free_port()
    server = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root), "-c",
         "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
         "full_page_writes=off"],
        stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("wb"), **demote)
    try:
        _wait_ready(port, server, root / "server.log")
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "multishap",
                        "multishap"], check=True, capture_output=True)
        yield f"postgresql+psycopg://multishap@127.0.0.1:{port}/multishap"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: open connections are closed
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import psycopg

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start: {log.read_text()[-2000:]}")
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=multishap dbname=postgres", connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.2)
    raise RuntimeError("PostgreSQL did not accept connections within a minute")
