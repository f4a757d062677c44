"""Delivers the outbox: claims each due message, asks whether it is still wanted, renders it in
its recipient's language, sends it, and records what happened (sent with Telegram's message id,
skipped with why, failed with why).

- Whether a message is still wanted when its time comes is study/still_wanted.py's (`why_not`: a
  participant who paused or left, a dose recorded meanwhile, a visit moved, an alert acknowledged,
  a message past its useful time...); the dispatcher records its reason as the skip. One sent after
  `late_after` says it is late.
- Inside quiet hours (the recipient's local time) messages go without sound.
- A row with `edit_message_id` edits that earlier message instead of sending a new one (an
  acknowledged alert's other copies lose their button and say who acknowledged it); an alert's
  copy recorded sent after its alert was acknowledged is closed the same way (alerts.copy_sent).
- 403 (blocked): failed at once, the participant marked unreachable, the study team told.
  A message Telegram refuses (400) fails at once; 429 waits `retry_after`; network errors and
  Telegram's 5xx are retried with backoff. Nothing is dropped without a record.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import ReplyParameters
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import ExtBot

from bot.send_limiter import BULK
from messages import sent as sent_record
from messages.markup import inline_keyboard
from messages.renderer import Button, MessageCatalog, MessageError, RenderedMessage
from study import alerts, conversation, outbox, participant_text, still_wanted
from study.clock import Clock
from study.database import Database, is_unavailable
from study.models import (
    URGENCY,
    DeliveryStep,
    JSONObject,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Participant,
    ParticipantMessage,
    StaffMember,
    Urgency,
)
from study.protocol import Protocol

log = logging.getLogger(__name__)
# Telegram's limit for one message's text, in UTF-16 units after entity parsing.
MAX_TEXT = 4096
_TAG = re.compile(r"<[^>]+>")
MAX_ATTEMPTS = 8
BATCH = 50  # messages looked up at once; the after-batch hook (broadcast progress) runs after each batch
# Messages under way at once (each recipient's one at a time): enough to keep Telegram's 30 a
# second going with 100 ms round trips and the database's records between sends. The send
# limiter's slots free together (a broadcast's first 30 went out together); with 10 under way a
# freed slot waited for the next claim (4-5 ms a send on average at 100 ms, 12 ms at the 90th
# percentile: bench/broadcast.py), with 20 there is a send waiting for it. Of those a crash
# leaves 'sending', only the few whose request was out may reach a participant twice.
IN_FLIGHT = 20
# Who a message is for, as the outbox row says: (participant id, staff id). One at a time each.
RecipientKey = tuple[int | None, int | None]

# Messages that go out in numbers on a schedule: behind replies at the send limiter, and at most
# one a second to one chat (bot/send_limiter.py).
BULK_KINDS = frozenset(kind for kind, urgency in URGENCY.items() if urgency >= Urgency.SCHEDULED)


def _seen_after_round(task: asyncio.Task[bool]) -> None:
    """A delivery that outlived its round (cancelled): its failure is logged in one line."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("a delivery under way when its round ended failed (%s)", type(task.exception()).__name__)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(15 * 2 ** attempts, 3600))


def _retry_after(error: RetryAfter) -> timedelta:
    value: Any = error.retry_after
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


class OutboxDispatcher:
    def __init__(self, bot: ExtBot[Any], db: Database, messages: MessageCatalog, clock: Clock, protocol: Protocol,
                 study_variables: Mapping[str, object]) -> None:
        self.bot = bot
        self.db = db
        self.messages = messages
        self.clock = clock
        self.protocol = protocol
        self.study_variables = study_variables
        # One delivery round at a time in this process: whoever asks for a round while one is
        # running waits for it, so "deliver_due() returned" means everything due was handled.
        self._round = asyncio.Lock()
        self.in_flight = IN_FLIGHT  # messages under way at once
        # Called after each batch (the broadcast progress message reads what was just recorded).
        self.after_batch = None
        # What Telegram did with messages whose record the database could not take at the time.
        self._unwritten: list[tuple[int, Callable[[], Awaitable[None]]]] = []

    async def run(self, wake: asyncio.Event, *, idle_seconds: float = 5.0, stop: asyncio.Event | None = None,
                  fence: Any = None) -> None:
        """Deliver whatever is due, then wait to be woken (or for the next look), until `stop` is
        set (then the message being sent is finished, and no other is claimed). Call
        `recover_in_flight` first, before anything else can deliver. `fence`: see `deliver_due`."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.deliver_due(stop=stop, fence=fence)
            except Exception as exc:  # the dispatcher must outlive a bad moment of the database
                if is_unavailable(exc):  # logged once by the database; every round would be a flood
                    log.debug("outbox delivery round failed: database unavailable; will try again")
                else:
                    log.exception("outbox delivery round failed; will try again")
            if stop.is_set():
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=idle_seconds)
            except TimeoutError:
                pass
            wake.clear()

    async def recover_in_flight(self) -> int:
        """Messages claimed by a process that died mid-send go back in the queue. Telegram may
        have delivered some of them, so a crash can repeat at most the messages in flight.

        Only when no other process can be delivering: at start-up, when this process becomes the
        scheduler leader (scheduler/leadership.py), before it delivers anything. Run while a
        delivery is under way, it would put that message back in the queue and send it twice.
        With several processes, one case remains: a leader cut off from the database but still
        alive may be finishing the messages it claimed (up to IN_FLIGHT under way at once)
        when its successor puts them back; so a change of leader repeats at most the messages
        the lost leader had in flight at that moment.

        What this process itself knows happened (outcomes it could not record while the database
        was away) is written first: only messages nobody can account for go back in the queue."""
        await self._write_down_kept()
        async with self.db.transaction() as session:
            # (An UPDATE's result is a CursorResult; AsyncSession.execute is typed for any statement.)
            result = cast(CursorResult[Any], await session.execute(
                update(OutboxMessage).where(OutboxMessage.status == OutboxStatus.SENDING).values(status=OutboxStatus.PENDING)))
        if result.rowcount:
            log.warning("%s message(s) were being sent when the last deliverer stopped; sending again",
                        result.rowcount)
        return result.rowcount

    async def deliver_due(self, *, stop: asyncio.Event | None = None, fence: Any = None) -> int:
        """Deliver every message due now; returns how many this deliverer handled (sent, skipped
        or failed). Up to `in_flight` messages are under way at once, each recipient's one at a
        time and in the order they are due; the send limiter (bot/send_limiter.py) paces them.
        With `stop` set, it claims nothing more and returns once the messages under way are done.
        `fence` is a SQL condition every claim must meet: the scheduler leader's lock is still
        held, so a leader that lost it claims nothing more, even before it notices."""
        handled = 0
        async with self._round:
            await self._write_down_kept()
            running: dict[asyncio.Task[bool], tuple[int, RecipientKey]] = {}
            waiting: list[tuple[int, RecipientKey]] = []  # looked up, not started: (row id, recipient)
            dry = False  # the last look found nothing new: look again once a delivery ends
            looked, claims_since_look, since_hook = False, 0, 0
            failure: BaseException | None = None
            try:
                while True:
                    stopping = (stop is not None and stop.is_set()) or failure is not None
                    if not stopping and len(running) < self.in_flight:
                        busy = {recipient for _, recipient in running.values()}
                        if not dry and not _startable(waiting, busy):
                            if looked and not running and not claims_since_look:
                                break  # what is due is nothing this deliverer may (or could) claim
                            exclude = [row_id for row_id, _ in waiting] + [row_id for row_id, _ in running.values()]
                            try:
                                async with self.db.transaction() as session:
                                    found = await outbox.due_to(session, now=self.clock.now(), limit=BATCH,
                                                                exclude=exclude)
                            except Exception as error:  # noqa: BLE001 - raised below, once what is under way is done
                                # (The database away mid-round: the messages under way end, and are
                                # recorded or kept, before the round gives up; none is left unwatched.)
                                failure = error
                                continue
                            looked, claims_since_look, dry = True, 0, not found
                            waiting += found
                        waiting = self._start(waiting, running, busy, fence)
                    if not running:
                        if stopping or dry:
                            break
                        continue
                    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        running.pop(task)
                        if task.exception() is not None:
                            failure = failure or task.exception()
                            continue
                        handled += task.result()
                        claims_since_look += task.result()
                    dry = False
                    since_hook += len(done)
                    if since_hook >= BATCH:
                        since_hook = 0
                        await self._after_batch()
            finally:
                # Cancelled mid-round (the leader stepping down): what is under way goes on to
                # its end and its record; how each ended is still looked at, not left unseen.
                for task in running:
                    task.add_done_callback(_seen_after_round)
            await self._after_batch()
        if failure is not None:
            raise failure
        return handled

    def _start(self, waiting: list[tuple[int, RecipientKey]], running: dict[asyncio.Task[bool], tuple[int, RecipientKey]],
               busy: set[RecipientKey], fence: Any) -> list[tuple[int, RecipientKey]]:
        """Start the deliveries that may start now, in order: one at a time per recipient (a
        recipient's later message waits behind its earlier one), at most `in_flight` in all.
        Returns what waits still."""
        still: list[tuple[int, RecipientKey]] = []
        for row_id, recipient in waiting:
            if len(running) < self.in_flight and recipient not in busy:
                task = asyncio.get_running_loop().create_task(self._deliver(row_id, fence=fence))
                running[task] = (row_id, recipient)
            else:
                still.append((row_id, recipient))
            busy.add(recipient)
        return still

    async def _after_batch(self) -> None:
        if self.after_batch is None:
            return
        try:
            await self.after_batch()
        except Exception as error:  # progress display must never stop delivery
            if not is_unavailable(error):  # an outage is logged once, by the database's Availability
                log.exception("after-batch hook failed")

    async def _deliver(self, row_id: int, *, fence: Any = None) -> bool:
        """Claim and deliver one message; False if it was not this deliverer's to claim."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            # Claim the row (pending -> sending) and commit before sending: of two deliverers
            # racing for it, only one gets it, and a crash leaves it marked as in flight.
            row = await outbox.claim(session, row_id, only_if=fence)
            if row is None:
                return False
            recipient: Participant | StaffMember | None = (
                await session.get(Participant, row.participant_id) if row.participant_id
                else await session.get(StaffMember, row.staff_id))
            chat_id, language, zone = _address(recipient, ZoneInfo(self.protocol.study.default_timezone))
            # An earlier try reached the participant though Telegram's answer to it was lost: they
            # answered that message (outbox.mark_answered learnt its id). It is recorded as sent,
            # not sent again, whatever has happened since (a dose recorded, the reminder stale): the
            # rules of what is still wanted are not asked.
            delivered_earlier = row.telegram_message_id if row.answered_at is not None else None
            why_not = None if delivered_earlier is not None else await still_wanted.why_not(
                session, self.protocol, row, recipient, now)
            if why_not is not None:
                row.status, row.last_error = OutboxStatus.SKIPPED, why_not
                await outbox.record_event(session, row.id, DeliveryStep.SKIPPED, now=now, detail=why_not)
                await _settled(session, row.participant_message_id, now)
                return True
            copy = await _copy_source(session, row) if row.kind == conversation.COPY_KIND else None
            variables = {**self.study_variables, **_localised(row.variables, zone),
                         "late": row.late_after is not None and now > row.late_after}
            buttons = [[Button(name, data, vars_) for name, data, vars_ in r] for r in (row.buttons or [])]
            # Quiet hours are the participants'; the study team's alerts and notices ring.
            quiet = row.participant_id is not None and self.protocol.reminders.is_quiet(now.astimezone(zone).time())
            template_id = row.template_id
            to_staff = row.staff_id is not None
            edit_id = row.edit_message_id
            pace = BULK if row.kind in BULK_KINDS else None
        if copy is not None:
            return await self._deliver_copy(row_id, chat_id, copy)
        rendered = None
        outcome: Callable[..., Awaitable[None]]
        try:
            rendered = self.messages.render(template_id, language, variables, buttons)
            if delivered_earlier is not None:
                await self._write_down(row_id, partial(self._sent, row_id, delivered_earlier, rendered, quiet,
                                                       earlier=True, at=self.clock.now()))
                return True
            if edit_id is not None:
                return await self._edit(row_id, chat_id, edit_id, rendered)
            sent = await self.bot.send_message(chat_id, rendered.text, reply_markup=inline_keyboard(rendered),
                                               disable_notification=quiet, rate_limit_args=pace)
        except MessageError as exc:
            outcome = partial(self._fail, row_id, f"template: {exc}")
        except TelegramError as exc:
            outcome = self._after_telegram_error(row_id, exc)
            if isinstance(exc, BadRequest) and to_staff and rendered is not None:
                # What the study team must read is tried once more in the plainest form Telegram
                # takes: no formatting, in parts that each fit one message.
                outcome = await self._send_plain(row_id, chat_id, rendered, exc) or outcome
        else:
            outcome = partial(self._sent, row_id, sent.message_id, rendered, quiet)
        await self._write_down(row_id, partial(outcome, at=self.clock.now()))
        return True

    async def _edit(self, row_id: int, chat_id: int, message_id: int, rendered: RenderedMessage) -> bool:
        """Edit an earlier message of the chat to `rendered` (its buttons too: none, none shown).
        An edit Telegram finds already made ("not modified": an earlier try whose answer was lost)
        counts as made; a message gone from the chat fails the row, without retries."""
        outcome: Callable[..., Awaitable[None]]
        try:
            await self.bot.edit_message_text(rendered.text, chat_id=chat_id, message_id=message_id,
                                             reply_markup=inline_keyboard(rendered))
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                outcome = partial(self._sent, row_id, message_id, rendered, False, edited=True)
            else:
                outcome = self._after_telegram_error(row_id, exc)
        except TelegramError as exc:
            outcome = self._after_telegram_error(row_id, exc)
        else:
            outcome = partial(self._sent, row_id, message_id, rendered, False, edited=True)
        await self._write_down(row_id, partial(outcome, at=self.clock.now()))
        return True

    def _after_telegram_error(self, row_id: int, error: TelegramError) -> Callable[..., Awaitable[None]]:
        """What to write down when Telegram did not take a message."""
        if isinstance(error, Forbidden):
            return partial(self._blocked, row_id)
        if isinstance(error, BadRequest):
            # Telegram will refuse this the same way every time (for example "chat not found":
            # the person never opened the bot); retrying would only repeat it.
            return partial(self._fail, row_id, f"refused: {error.message}")
        if isinstance(error, RetryAfter):
            return partial(self._retry, row_id, "rate limited by Telegram", _retry_after(error))
        return partial(self._retry, row_id, f"{type(error).__name__}: {error.message}"[:200], None)

    async def _send_plain(self, row_id: int, chat_id: int, rendered: RenderedMessage,
                          refusal: BadRequest) -> Callable[..., Awaitable[None]] | None:
        """A staff message Telegram refused, sent again as plain text in parts; the outcome to
        write down, or None if Telegram refused that too."""
        plain = html.unescape(_TAG.sub("", rendered.text)).strip()
        parts = participant_text.split(plain, MAX_TEXT)
        ids = []
        try:
            for number, part in enumerate(parts, start=1):
                # The buttons (an alert's Acknowledge) go with the last part.
                markup = inline_keyboard(rendered) if number == len(parts) else None
                message = await self.bot.send_message(chat_id, part, parse_mode=None, reply_markup=markup)
                ids.append(message.message_id)
        except TelegramError as exc:
            log.warning("outbox %s: refused as sent (%s) and as plain text (%s)", row_id, refusal.message,
                        type(exc).__name__)
            if ids:  # some parts went out: what did is on record, and the rest is a failure
                return partial(self._fail, row_id, f"refused: {refusal.message}; plain text: only "
                               f"{len(ids)} part(s) sent ({type(exc).__name__})")
            return None
        log.warning("outbox %s: refused (%s); sent as plain text in %s part(s)", row_id, refusal.message, len(ids))
        return partial(self._sent, row_id, ids[0], rendered, False,
                       note=f"sent as plain text in {len(ids)} part(s) after Telegram refused it: {refusal.message}")

    async def _deliver_copy(self, row_id: int, chat_id: int, source: tuple[int | None, int | None, int | None]) -> bool:
        """Copy a participant's photo, document or voice note into a staff member's chat, as a
        reply to the notice that says whose it is (copyMessage carries no link to the sender)."""
        from_chat, message_id, reply_to = source
        assert from_chat is not None and message_id is not None  # else skipped before (_deliver)
        try:
            copied = await self.bot.copy_message(
                chat_id, from_chat_id=from_chat, message_id=message_id,
                reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None)
        except TelegramError as exc:
            outcome = self._after_telegram_error(row_id, exc)
        else:
            outcome = partial(self._copied, row_id, copied.message_id)
        await self._write_down(row_id, partial(outcome, at=self.clock.now()))
        return True

    async def _copied(self, row_id: int, message_id: int, *, at: datetime) -> None:
        async with self.db.transaction() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.status, row.sent_at, row.telegram_message_id = OutboxStatus.SENT, at, message_id
            row.attempts += 1
            await outbox.record_event(session, row.id, DeliveryStep.SENT, now=at, detail=f"message {message_id} (a copy)")
            await _settled(session, row.participant_message_id, at)

    async def _write_down(self, row_id: int, outcome: Callable[[], Awaitable[None]]) -> None:
        """Record what happened to a message handed to Telegram. With the database away, the
        outcome is kept and written at the start of the next round: the row stays 'sending'
        meanwhile, so nothing else sends it, and what Telegram did is not forgotten."""
        try:
            await outcome()
        except Exception as exc:
            if is_unavailable(exc):
                self._unwritten.append((row_id, outcome))
            raise

    async def _write_down_kept(self) -> None:
        """Outcomes kept while the database was away, oldest first (raises if it still is). One
        whose row another leader settled meanwhile is dropped: that leader's record stands."""
        while self._unwritten:
            row_id, outcome = self._unwritten[0]
            async with self.db.transaction() as session:
                status = await session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == row_id))
            if status in (OutboxStatus.SENDING, OutboxStatus.PENDING):
                await outcome()
            else:
                log.warning("outbox %s was settled by another deliverer; what this one saw is not recorded", row_id)
            self._unwritten.pop(0)

    async def _sent(self, row_id: int, message_id: int, rendered: RenderedMessage, quiet: bool, *, at: datetime,
                    earlier: bool = False, note: str | None = None, edited: bool = False) -> None:
        """Telegram took the message. `earlier`: not now, but at a try whose answer was lost (the
        participant answered it); `sent_at` is then when that came to light. `edited`: the row
        edited message `message_id` rather than sending one."""
        now = at
        async with self.db.transaction() as session:
            # Three statements, no unit of work to flush (this runs once for every message sent).
            row = await outbox.mark_sent(session, row_id, at=now, message_id=message_id, language=rendered.language,
                                         template_hash=rendered.template_hash, quiet=quiet, tries=0 if earlier else 1)
            if row.participant_id:
                recipient = sent_record.Recipient.participant(row.participant_id)
            else:
                assert row.staff_id is not None  # every message is to a participant or a staff member
                recipient = sent_record.Recipient.staff(row.staff_id)
            await sent_record.insert(session, rendered, recipient=recipient, via="edit" if edited else "outbox",
                                     telegram_message_id=message_id, now=now)
            late = row.late_after is not None and now > row.late_after and not earlier
            detail = (f"edited message {message_id}" if edited else f"message {message_id}") + (
                ", late" if late else "") + (", silent (quiet hours)" if quiet else "")
            if earlier:
                detail += ", delivered at an earlier try whose answer was lost (the participant answered it)"
            if note:
                detail += f", {note}"
            await outbox.record_event(session, row_id, DeliveryStep.SENT, now=now, detail=detail)
            await _settled(session, row.participant_message_id, now)
            if row.kind == OutboxKind.ALERT:  # acknowledged while on its way: closed at once
                await alerts.copy_sent(session, await session.get_one(OutboxMessage, row_id), now=now)

    async def _fail(self, row_id: int, why: str, *, at: datetime) -> None:
        now = at
        async with self.db.transaction() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.status, row.last_error = OutboxStatus.FAILED, why[:256]
            row.attempts += 1
            await outbox.record_event(session, row.id, DeliveryStep.FAILED, now=now, detail=why)
            await _settled(session, row.participant_message_id, now)
        log.warning("outbox %s failed: %s", row_id, why)

    async def _blocked(self, row_id: int, *, at: datetime) -> None:
        now = at
        async with self.db.transaction() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.status, row.last_error = OutboxStatus.FAILED, "blocked by the user"
            row.attempts += 1
            await outbox.record_event(session, row.id, DeliveryStep.FAILED, now=now, detail="blocked by the user (403)")
            await _settled(session, row.participant_message_id, now)
            if row.participant_id is not None:
                participant = await session.get_one(Participant, row.participant_id)
                if participant.unreachable_since is None:
                    participant.unreachable_since = now
                    await outbox.notify_staff(session, event_key=f"unreachable:{participant.study_id}:{now:%Y%m%d}",
                                              template_id="staff_unreachable",
                                              variables={"study_id": participant.study_id}, now=now)
        log.warning("outbox %s failed: recipient blocked the bot", row_id)

    async def _retry(self, row_id: int, why: str, delay: timedelta | None, *, at: datetime) -> None:
        now = at
        async with self.db.transaction() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.attempts += 1
            row.last_error = why
            row.status = OutboxStatus.PENDING
            if row.attempts >= MAX_ATTEMPTS:
                row.status = OutboxStatus.FAILED
                await outbox.record_event(session, row.id, DeliveryStep.FAILED, now=now, detail=f"gave up after {row.attempts} tries: {why}")
                await _settled(session, row.participant_message_id, now)
            else:
                row.not_before = now + (delay or _backoff(row.attempts))
                await outbox.record_event(session, row.id, DeliveryStep.RETRY, now=now,
                                          detail=f"{why}; next try {row.not_before:%H:%M:%S} UTC")
        log.warning("outbox %s not delivered (%s), attempt %s", row_id, why, row.attempts)


def _startable(waiting: list[tuple[int, RecipientKey]], busy: set[RecipientKey]) -> bool:
    return any(recipient not in busy for _, recipient in waiting)


async def _settled(session: AsyncSession, participant_message_id: int | None, now: datetime) -> None:
    """A row is settled (sent, skipped or failed); if it passes on a participant's message
    (`participant_message_id`), perhaps they can be told now."""
    if participant_message_id is not None:
        await conversation.after_delivery(session, participant_message_id, now=now)


async def _copy_source(session: AsyncSession, row: OutboxMessage) -> tuple[int | None, int | None, int | None]:
    """Where a copy comes from (the participant's chat and message) and the staff notice it
    answers (its message id, once sent)."""
    record = await session.get_one(ParticipantMessage, row.participant_message_id)
    participant = await session.get_one(Participant, record.participant_id)
    reply_to = await session.scalar(select(OutboxMessage.telegram_message_id).where(
        OutboxMessage.dedup_key == row.variables.get("reply_to_key"), OutboxMessage.status == OutboxStatus.SENT))
    return participant.telegram_chat_id, record.telegram_message_id, reply_to


def _localised(variables: JSONObject, zone: ZoneInfo) -> JSONObject:
    """Outbox variables are JSON; `*_at` values are instants shown in the recipient's zone and
    `*_date` values are calendar days."""
    result = {}
    for name, value in variables.items():
        if isinstance(value, str) and name.endswith("_at"):
            value = datetime.fromisoformat(value).astimezone(zone)
        elif isinstance(value, str) and name.endswith("_date"):
            value = date.fromisoformat(value)
        result[name] = value
    return result


def _address(recipient: Participant | StaffMember | None, study_zone: ZoneInfo) -> tuple[int, str, ZoneInfo]:
    """Where a message goes, in which language, shown in which zone (a chat of 0: nowhere, and
    then study/still_wanted.py has said why not)."""
    if recipient is None:
        return 0, "en", study_zone
    if isinstance(recipient, StaffMember):
        return recipient.telegram_user_id, recipient.language, study_zone
    return recipient.telegram_chat_id or 0, recipient.language, ZoneInfo(recipient.timezone)
