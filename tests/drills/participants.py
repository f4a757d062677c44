"""Simulated participants for the fault drills: people who answer their reminders and do a
check-in through an unreliable Telegram, the way people do.

A participant presses a button and waits (a few seconds of wall time) for the spinner to stop.
Whatever happened, they then look at the chat: a message that says "Saved." is a confirmation;
a button still shown is pressed again; a keyboard gone without a confirmation sends them to
/log (or /symptoms) to try afresh, which is where a product that lost track would store twice.
They keep count of what they saw confirmed, so the drill can hold the record against it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sandbox.chat import BotEventTimeout, ChatMessage, SimUser

REMINDER_TEXT = "Time for your study cream"
DIARY_SAVED = "Saved."
CHECKIN_DONE = ("Your check-in is saved", "This check-in is already finished")
# A full check-in, one answer per question, pressed by callback data (the labels repeat: 0-10).
CHECKIN_ANSWERS = ("k:itch:3", "k:pain:2", "k:reaction:none", "k:new_problem:no", "k:medicines:no",
                   "k:red_flags:done", "k:save", "k:resume")


def _data(message: ChatMessage | None) -> list[str]:
    return [data for row in (message.buttons if message else []) for _, data in row if data]


@dataclass
class Participant:
    """One simulated participant: what they mean to do, and what they saw."""

    user: SimUser
    study_id: str
    participant_id: int
    diary_intent: str  # applied | missed | ignore
    checkin_minute: int | None  # the simulated minute they start /symptoms, if they do
    patience: float  # wall seconds they wait for the spinner before looking again
    tries: int = 6
    answered: set[int] = field(default_factory=set)  # reminder messages already dealt with
    diary_confirmed: int = 0
    diary_gave_up: int = 0
    used_fallback: int = 0
    checkin_confirmed: bool = False
    checkin_gave_up: bool = False

    async def act(self, minute: int) -> None:
        """Deal with every new reminder copy, and start the check-in when its minute comes."""
        for message in self.user.bot_messages:
            if REMINDER_TEXT in (message.text or "") and message.message_id not in self.answered:
                self.answered.add(message.message_id)
                if self.diary_intent != "ignore":
                    await self._answer_reminder(message.message_id)
        if self.checkin_minute == minute:
            await self._check_in()

    # --- the diary --------------------------------------------------------------------

    async def _answer_reminder(self, message_id: int) -> None:
        for _ in range(self.tries):
            shown = self.user.message(message_id)
            if DIARY_SAVED in (shown.text or ""):
                self.diary_confirmed += 1
                return
            data = self._diary_button(shown)
            if data is None:
                break  # the keyboard is gone and nothing says saved
            await self._press(data, message_id)
        if DIARY_SAVED in (self.user.message(message_id).text or ""):
            self.diary_confirmed += 1
            return
        self.used_fallback += 1
        await self._log_afresh()

    def _diary_button(self, shown: ChatMessage) -> str | None:
        """The next press toward this participant's answer, among the buttons shown."""
        buttons = _data(shown)
        wanted = ("d:n:",) if self.diary_intent == "applied" else ("d:m:",)
        reasons = [d for d in buttons if d.startswith("d:m:") and d.endswith(":forgot")]
        if self.diary_intent == "missed" and reasons:
            return reasons[0]
        return next((d for d in buttons if d.startswith(wanted) and d.count(":") == 2), None)

    async def _log_afresh(self) -> None:
        """/log, then the answer on the fresh menu: a new form, so a second entry if the first
        was stored without the participant being told."""
        for _ in range(self.tries):
            menu = await self.command("/log", lambda m: any(d.startswith("d:n:") for d in _data(m)))
            if menu is None:
                continue
            for _ in range(self.tries):
                shown = self.user.message(menu.message_id)
                if DIARY_SAVED in (shown.text or ""):
                    self.diary_confirmed += 1
                    return
                data = self._diary_button(shown)
                if data is None:
                    break
                await self._press(data, menu.message_id)
            if DIARY_SAVED in (self.user.message(menu.message_id).text or ""):
                self.diary_confirmed += 1
                return
        self.diary_gave_up += 1

    # --- the check-in -----------------------------------------------------------------

    async def _check_in(self) -> None:
        for _ in range(self.tries * len(CHECKIN_ANSWERS)):
            shown = self._latest_checkin_message()
            if shown is not None and any(done in (shown.text or "") for done in CHECKIN_DONE):
                self.checkin_confirmed = True
                return
            data = next((d for d in CHECKIN_ANSWERS if d in _data(shown)), None)
            if data is None:  # nothing to press: (re)start, as a person would
                await self.command("/symptoms", lambda m: any(d.startswith("k:") for d in _data(m)))
                continue
            await self._press(data, shown.message_id)
        self.checkin_gave_up = True

    def _latest_checkin_message(self) -> ChatMessage | None:
        for message in reversed(self.user.bot_messages):
            if any(d.startswith("k:") for d in _data(message)) or any(
                    done in (message.text or "") for done in CHECKIN_DONE):
                return message
        return None

    # --- pressing and waiting -----------------------------------------------------------

    async def _press(self, data: str, message_id: int) -> None:
        """Press and wait for the spinner to stop (the button answered), or run out of patience."""
        try:
            query_id = await self.user.press(data=data, message_id=message_id)
        except LookupError:
            return
        try:
            await self.user.wait_for(lambda u: any(a[0] == query_id for a in u.callback_answers),
                                     timeout=self.patience)
        except BotEventTimeout:
            pass

    async def command(self, text: str, wanted) -> ChatMessage | None:
        """Send a command; the first new bot message that `wanted` accepts, if one comes in time."""
        before = len(self.user.bot_messages)
        await self.user.send_text(text)
        try:
            await self.user.wait_for(lambda u: any(wanted(m) for m in u.bot_messages[before:]),
                                     timeout=self.patience)
        except BotEventTimeout:
            return None
        return next(m for m in self.user.bot_messages[before:] if wanted(m))


class Crowd:
    """Everyone, acting alongside the clock: each minute every participant looks at their chat
    (at most `at_once` at the same moment: people do not all tap in one second), and whoever is
    still busy with an earlier minute carries on first, as a person would."""

    def __init__(self, people: list[Participant], at_once: int) -> None:
        self.people = people
        self._gate = asyncio.Semaphore(at_once)
        self._busy: dict[int, asyncio.Task] = {}

    def look(self, minute: int) -> None:
        for person in self.people:
            earlier = self._busy.get(person.participant_id)
            self._busy[person.participant_id] = asyncio.create_task(self._act(person, minute, earlier))

    async def _act(self, person: Participant, minute: int, earlier: asyncio.Task | None) -> None:
        if earlier is not None:
            await earlier
        async with self._gate:
            await person.act(minute)

    @property
    def idle(self) -> bool:
        return all(task.done() for task in self._busy.values())

    async def settle(self, timeout: float | None = None) -> None:
        """Wait until everyone is done (or `timeout` wall seconds pass); re-raises their errors."""
        tasks = [t for t in self._busy.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for task in self._busy.values():
            if task.done():
                task.result()
