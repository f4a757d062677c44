"""Live progress of broadcasts: the author's one status message, edited in place from what the
dispatcher recorded (sent / failed / blocked of total, and what was not sent because the
approval ran out), at most every `progress_every_seconds`, and a final report when every
recipient's row is settled. Runs after each delivery batch. An author whose access has ended
(study/staff.py) gets no more edits; the broadcast is still finished and recorded."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from messages.renderer import MessageCatalog
from study import audit, broadcasts
from study.audit import SYSTEM
from study.clock import Clock
from study.database import Database
from study.models import Broadcast, BroadcastStatus, StaffMember
from study.protocol import Protocol

log = logging.getLogger(__name__)


class BroadcastProgress:
    def __init__(self, bot: Bot, db: Database, messages: MessageCatalog, clock: Clock, protocol: Protocol,
                 study_variables: Mapping[str, object]) -> None:
        self.bot, self.db, self.messages, self.clock = bot, db, messages, clock
        self.every = timedelta(seconds=protocol.broadcasts.progress_every_seconds)
        self.study_variables = study_variables

    async def run_once(self) -> int:
        """Edit the status message of each sending broadcast whose counts changed; returns edits made."""
        edits = 0
        async with self.db.transaction() as session:
            ids = [row.id for row in await broadcasts.sending(session)]
        for row_id in ids:
            try:
                edits += await self._one(row_id)
            except TelegramError as exc:  # a status message is a convenience; delivery goes on
                log.warning("broadcast %s: progress not shown (%s)", row_id, type(exc).__name__)
        return edits

    async def _one(self, row_id: int) -> int:
        now = self.clock.now()
        async with self.db.transaction() as session:
            row = await session.get_one(Broadcast, row_id)  # just read as sending; never deleted
            if not row.status_chat_id or not row.status_message_id:
                # The author's confirmation is still becoming the status message: report (and
                # finish) only once it exists, or the final report would have nowhere to go.
                return 0
            progress = await broadcasts.progress(session, row)
            if progress.key() == row.progress and not progress.done:
                return 0
            if not progress.done and row.progress_at is not None and now - row.progress_at < self.every:
                return 0
            author = await session.get(StaffMember, row.author_id)
            approver = await session.get(StaffMember, row.approver_id) if row.approver_id else None
            row.progress, row.progress_at = progress.key(), now
            if progress.done:
                row.status, row.finished_at = BroadcastStatus.DONE, now
                await audit.record(session, actor=SYSTEM, action="update", entity="broadcast",
                                   entity_id=row.id, now=now, old={"status": BroadcastStatus.SENDING},
                                   new={"status": BroadcastStatus.DONE, **progress.as_variables()}, reason="broadcast finished")
            chat_id, message_id = row.status_chat_id, row.status_message_id
            variables = {**self.study_variables, "broadcast_id": row.id, "state": "done" if progress.done else "sending",
                         "approver": approver.name if approver else "", "by": "", **progress.as_variables()}
            language = author.language if author else "en"
        if author is None or not author.active:
            return 0
        rendered = self.messages.render("staff_broadcast_status", language, variables)
        try:
            await self.bot.edit_message_text(rendered.text, chat_id=chat_id, message_id=message_id)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
        return 1
