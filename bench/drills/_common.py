"""What the drill scripts share: the repository on sys.path, the database options, the verdict."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LOCAL_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("TRIALBOT_BENCH_DATABASE_URL", LOCAL_POSTGRES),
                        help="the PostgreSQL server to make a throw-away database or schema on")
    parser.add_argument("--seed", type=int, default=8)
    return parser


def verdict(report, scratch: Path) -> None:
    """Print the figures and PASS or FAIL with why; exit 1 on FAIL."""
    print(report.summary())
    print(f"  logs (and a SQLite database, if used) kept in {scratch}")
    failures = report.failures()
    print("PASS" if not failures else "FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


@contextlib.asynccontextmanager
async def scratch_dir() -> AsyncIterator[Path]:
    """A folder for the drill's files, kept afterwards so its logs can be read: drill.log from
    this process (and an in-process bot, as `trialbot run` would log), bot.log from a
    `trialbot run` process."""
    from bot.logging_setup import configure_logging

    scratch = Path(tempfile.mkdtemp(prefix="trialbot-drill-"))
    with (scratch / "drill.log").open("a", encoding="utf-8") as log:
        configure_logging("INFO", stream=log)
        yield scratch


def scratch_schema_database(args, scratch: Path):
    """A migrated Database for in-process drills: a SQLite file, or a PostgreSQL schema of its own."""
    from tests.databases import migrated

    if args.database == "sqlite":
        return migrated(f"sqlite+aiosqlite:///{scratch / 'drill.db'}")
    return migrated(args.postgres_url, prefix="drill")
