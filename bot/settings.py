"""Settings from the environment (or a `.env` file), validated by pydantic-settings.

Every setting is documented in `bot/env.example`, which `trialbot init` copies into a site's .env. The bot token is a SecretStr so it never shows
up in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from messages.catalog import ROOT_ENV as MESSAGES_DIR_ENV

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///trialbot.db"
TELEGRAM_API_URL = "https://api.telegram.org"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = TELEGRAM_API_URL
    telegram_bot_username: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    study_file: Path = Path("study.toml")
    # A site's own copy of the message templates and catalog (`trialbot init` writes one); the
    # copy inside the package when unset. Read by messages/catalog.py from the environment.
    trialbot_messages_dir: Path | None = None
    log_level: str = "INFO"
    # Webhook mode (`trialbot run --webhook URL`): where this process listens behind the proxy
    # that terminates HTTPS, and the secret Telegram must send back with every update.
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: SecretStr | None = None
    # The scheduler: how often the planner looks at what is due, how often the outbox is looked
    # at besides being woken, and how often a process that is not the scheduler leader tries to
    # become it (with PostgreSQL, several processes may run; one plans and delivers).
    scheduler_tick_seconds: float = Field(default=60, gt=0)
    outbox_poll_seconds: float = Field(default=5, gt=0)
    leader_retry_seconds: float = Field(default=5, gt=0)

    def export_messages_dir(self) -> None:
        """Make a TRIALBOT_MESSAGES_DIR given in .env visible to messages/catalog.py, which reads
        only the environment (the environment itself wins, as everywhere in these settings)."""
        if self.trialbot_messages_dir is not None:
            os.environ.setdefault(MESSAGES_DIR_ENV, str(self.trialbot_messages_dir.resolve()))

    @property
    def token(self) -> str | None:
        return self.telegram_bot_token.get_secret_value() if self.telegram_bot_token else None

    def webhook_secret_value(self) -> str:
        """WEBHOOK_SECRET, or one derived from the token: every process of one bot derives the
        same, so several processes behind one webhook URL agree on what Telegram must send, and
        nobody without the token can work it out."""
        if self.webhook_secret:
            return self.webhook_secret.get_secret_value()
        if not self.token:
            return ""
        digest = hmac.new(self.token.encode(), b"trialbot webhook secret", hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def bot_base_url(self) -> str:
        return self.telegram_api_url.rstrip("/") + "/bot"

    def bot_file_url(self) -> str:
        return self.telegram_api_url.rstrip("/") + "/file/bot"
