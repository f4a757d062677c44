"""`trialbot run` as a separate process, for drills that kill it or take its database away,
and throw-away databases for it (a SQLite file, or a PostgreSQL database of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.study_files import write_study_file

REPO = Path(__file__).resolve().parents[2]
TOKEN = "555000222:DRILL-TOKEN-abcdefghijk"


class BotProcess:
    """One `python -m bot run`, its output appended to `log_path` (restarts append too)."""

    def __init__(self, *, api_url: str, database_url: str, workdir: Path, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "DATABASE_URL": database_url,
                    "TELEGRAM_API_URL": api_url, "STUDY_FILE": str(write_study_file(workdir / "site")),
                    "LOG_LEVEL": "INFO",
                    **(extra_env or {})}
        self.workdir = workdir
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=self.workdir, env=self.env,
                stdout=log, stderr=asyncio.subprocess.STDOUT)

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as after a power cut or the OOM killer."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as systemd stops it; returns the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.asynccontextmanager
async def scratch_database(backend: str, workdir: Path, admin_url: str | None = None) -> AsyncIterator[str]:
    """A fresh database URL: a SQLite file in `workdir`, or a PostgreSQL database made for the
    drill on the server `admin_url` points at (and dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'drill.db'}"
        return
    if not admin_url:
        raise ValueError("a PostgreSQL drill needs a server URL")
    name = f"drill_{uuid.uuid4().hex[:12]}"
    # pool_pre_ping: a drill may have stopped and restarted the server in between.
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()
