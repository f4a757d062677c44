"""What every handler needs, built once in the composition root (bot/app.py `build_application`) as
part of the bot's runtime (bot/runtime.py); handlers read it as `services(context)`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from messages.renderer import MessageCatalog
from study.clock import Clock
from study.database import Database
from study.protocol import Protocol
from study.strangers import RecentUpdates, WrongCodeLimit

if TYPE_CHECKING:
    from bot.runtime import TrialbotContext


@dataclass
class Services:
    protocol: Protocol
    db: Database
    clock: Clock
    messages: MessageCatalog
    # The wrong-code lock-out (its counts are in the database: study/strangers.py).
    lockout: WrongCodeLimit
    # Set whenever something is queued in the outbox, so the dispatcher delivers it at once.
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Strangers' updates seen lately (never written down): one delivered twice is answered once.
    recent_strangers: RecentUpdates = field(default_factory=RecentUpdates)
    # Presses whose recorded edit this process made (bot/exactly_once.py `replay`).
    edits_made: RecentUpdates = field(default_factory=RecentUpdates)

    def study_variables(self) -> dict[str, object]:
        return self.protocol.template_globals()


def services(context: TrialbotContext) -> Services:
    return context.runtime.services
