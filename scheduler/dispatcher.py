"""Delivers the outbox: renders each due message in its recipient's language, sends it, and
records what happened (sent with Telegram's message id, skipped with why, or failed with why).

A message to a participant who is not active (paused, withdrawn, finished) is skipped, not sent.
A user who blocked the bot, or a message Telegram refuses, fails at once; network errors,
rate limits and Telegram's own outages are retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from telegram import Bot
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from messages import sent as sent_record
from messages.markup import inline_keyboard
from messages.renderer import MessageCatalog, MessageError
from study import outbox
from study.clock import Clock
from study.database import Database
from study.models import OutboxMessage, Participant, StaffMember

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(15 * 2 ** attempts, 3600))


class OutboxDispatcher:
    def __init__(self, bot: Bot, db: Database, messages: MessageCatalog, clock: Clock, study_variables: dict) -> None:
        self.bot = bot
        self.db = db
        self.messages = messages
        self.clock = clock
        self.study_variables = study_variables

    async def run(self, wake: asyncio.Event, *, idle_seconds: float = 5.0) -> None:
        """Deliver whatever is due, then wait to be woken (or for the next look)."""
        while True:
            try:
                await self.deliver_due()
            except Exception:  # noqa: BLE001 - the dispatcher must outlive a bad moment of the database
                log.exception("outbox delivery round failed; will try again")
            try:
                await asyncio.wait_for(wake.wait(), timeout=idle_seconds)
            except TimeoutError:
                pass
            wake.clear()

    async def deliver_due(self) -> int:
        delivered = 0
        async with self.db.transaction() as session:
            rows = await outbox.due(session, now=self.clock.now())
        for row in rows:
            await self._deliver(row)
            delivered += 1
        return delivered

    async def _deliver(self, row: OutboxMessage) -> None:
        async with self.db.transaction() as session:
            row = await session.get(OutboxMessage, row.id)
            if row is None or row.status != "pending":
                return
            recipient = await session.get(Participant if row.participant_id else StaffMember,
                                          row.participant_id or row.staff_id)
            chat_id, language, why_not = _address(recipient)
        if why_not:
            await self._finish(row.id, status="skipped", error=why_not)
            return
        try:
            rendered = self.messages.render(row.template_id, language, {**self.study_variables, **row.variables})
            sent = await self.bot.send_message(chat_id, rendered.text, reply_markup=inline_keyboard(rendered))
        except MessageError as exc:
            await self._finish(row.id, status="failed", error=f"template: {exc}"[:256])
        except Forbidden:
            await self._finish(row.id, status="failed", error="blocked by the user")
        except BadRequest as exc:
            # Telegram will refuse this the same way every time (for example "chat not found":
            # the person never opened the bot); retrying would only repeat it.
            await self._finish(row.id, status="failed", error=f"refused: {exc.message}"[:256])
        except RetryAfter as exc:
            await self._retry(row.id, error="rate limited", delay=timedelta(seconds=float(exc.retry_after)))
        except TelegramError as exc:
            await self._retry(row.id, error=type(exc).__name__, delay=None)
        else:
            await self._finish(row.id, status="sent", message_id=sent.message_id, language=rendered.language,
                               template_hash=rendered.template_hash)
            recipient = (sent_record.Recipient.participant(row.participant_id) if row.participant_id
                         else sent_record.Recipient.staff(row.staff_id))
            await sent_record.record(self.db, rendered, recipient=recipient, via="outbox",
                                     telegram_message_id=sent.message_id, now=self.clock.now())

    async def _finish(self, row_id: int, *, status: str, error: str | None = None, message_id: int | None = None,
                      language: str | None = None, template_hash: str | None = None) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            row = await session.get(OutboxMessage, row_id)
            row.status = status
            row.attempts += 1
            row.last_error = error
            if status == "sent":
                row.sent_at, row.telegram_message_id = now, message_id
                row.language, row.template_hash = language, template_hash
        log.info("outbox %s %s%s", row_id, status, f" ({error})" if error else "")

    async def _retry(self, row_id: int, *, error: str, delay: timedelta | None) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            row = await session.get(OutboxMessage, row_id)
            row.attempts += 1
            row.last_error = error
            if row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
            else:
                row.not_before = now + (delay or _backoff(row.attempts))
        log.warning("outbox %s not delivered (%s), attempt %s", row_id, error, row.attempts)


def _address(recipient: Participant | StaffMember | None) -> tuple[int, str, str | None]:
    if recipient is None:
        return 0, "en", "recipient no longer exists"
    if isinstance(recipient, StaffMember):
        return recipient.telegram_user_id, recipient.language, None if recipient.active else "staff member inactive"
    if recipient.telegram_chat_id is None:
        return 0, recipient.language, "participant has no linked chat"
    if recipient.status != "active":
        return 0, recipient.language, f"participant is {recipient.status}"
    return recipient.telegram_chat_id, recipient.language, None
