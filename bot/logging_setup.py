"""Logging that cannot leak the bot token or what participants write.

httpx logs every request URL at INFO, and Telegram URLs contain the token; the redacting
formatter scrubs the token from every line (messages and tracebacks alike), and httpx is kept at
WARNING. PTB's own loggers never go below INFO, since its DEBUG lines dump update payloads.
Handlers log ids and outcomes, never message text.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

# Telegram bot tokens look like 123456789:AA...; scrub any such thing, not only the one we know.
TOKEN_PATTERN = re.compile(r"\d{3,}:[A-Za-z0-9_-]{10,}")


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "[token]")
        return TOKEN_PATTERN.sub("[token]", text)


def configure_logging(level: str = "INFO", *, secrets: list[str] | None = None, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets or []))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # These log request URLs (with the token) or SQL with its parameters (what participants
    # wrote) at INFO or DEBUG: never below WARNING, whatever LOG_LEVEL says.
    for noisy in ("httpx", "httpcore", "apscheduler", "aiohttp.access", "aiosqlite", "asyncpg", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # PTB's DEBUG lines dump whole updates and API payloads, which is what participants wrote;
    # even a developer's LOG_LEVEL=DEBUG must not write that to disk.
    logging.getLogger("telegram").setLevel(max(logging.INFO, root.level))
    return handler
