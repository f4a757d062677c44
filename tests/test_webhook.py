"""Webhook mode: Telegram POSTs updates to the bot, which refuses any request that does not carry
the secret token it registered with setWebhook."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.app import Webhook, build_application, demo_messages, running
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld
from study.clock import ManualClock
from study.database import Database
from study.protocol import Protocol
from tests.trial import COORDINATOR, Trial
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)
SECRET = "s3cret-token_for-the-webhook"
APPLIED_NOW = "✅ I put it on now"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_updates_arrive_by_webhook_and_requests_without_the_secret_are_refused(
        db: Database, clock: ManualClock, protocol: Protocol, telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    from datetime import timedelta

    from study import invites, participants
    from study.participants import EnrolmentRequest

    async with db.transaction() as session:
        person = await participants.enroll(session, protocol, EnrolmentRequest("P001", "America/New_York", "en"),
                                           actor=COORDINATOR, now=clock.now())
        code = (await invites.issue(session, person, valid_for=timedelta(days=1), actor=COORDINATOR,
                                    now=clock.now())).code
    port = free_port()
    hook = Webhook(url=f"http://127.0.0.1:{port}/telegram", secret_token=SECRET, port=port)
    app = build_application(token=telegram.token, base_url=bot_api.base_url, base_file_url=bot_api.base_file_url,
                            protocol=protocol, db=db, clock=clock, tick_seconds=None, rate_limit_retries=0,
                            messages=demo_messages(protocol))
    async with running(app, webhook=hook):
        assert telegram.webhook is not None and telegram.webhook.secret_token == SECRET
        user = telegram.add_user(user_id=1001, first_name="Pat")
        await user.send_text(f"/start {code}")  # the stand-in POSTs it to the webhook, with the secret
        consent = await user.next_bot_event()
        assert consent.button_labels == ["✅ Yes, I agree", "No, thank you"]
        assert not [c for c in telegram.calls if c.method == "getUpdates"], "no polling in webhook mode"

        forged = {"update_id": 999_999, "message": {
            "message_id": 1, "date": 0, "chat": {"id": 4242, "type": "private"},
            "from": {"id": 4242, "is_bot": False, "first_name": "Mallory"}, "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"}):
                async with http.post(hook.url, json=forged, headers=headers) as response:
                    assert response.status == 403
        stranger = telegram.add_user(user_id=4242, first_name="Mallory")
        assert stranger.bot_messages == [], "nothing was processed from the refused requests"
    assert telegram.rejected_calls == []


async def test_the_stand_in_refuses_polling_while_a_webhook_is_set_and_plain_http_elsewhere(
        telegram: TelegramWorld, bot_api: BotApiServer) -> None:
    from telegram import Bot
    from telegram.error import BadRequest, Conflict

    async with Bot(telegram.token, base_url=bot_api.base_url) as bot:
        with pytest.raises(BadRequest, match="(?i)https url must be provided"):
            await bot.set_webhook("http://example.org/hook")
        assert await bot.set_webhook(f"http://127.0.0.1:{free_port()}/hook", secret_token=SECRET)
        with pytest.raises(Conflict):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert list(await bot.get_updates(timeout=0)) == []


@pytest.fixture
async def webhook_trial(db: Database, clock: ManualClock, protocol: Protocol, telegram: TelegramWorld,
                        bot_api: BotApiServer) -> AsyncIterator[Trial]:
    port = free_port()
    hook = Webhook(url=f"http://127.0.0.1:{port}/telegram", secret_token=SECRET, port=port)
    async with Trial.running(db=db, clock=clock, protocol=protocol, world=telegram, server=bot_api,
                             webhook=hook) as running_trial:
        yield running_trial
    assert telegram.rejected_calls == [], "the bot made calls Telegram would reject"


async def test_a_pressed_button_is_answered_in_the_acknowledgement_of_its_update(
        webhook_trial: Trial, telegram: TelegramWorld) -> None:
    user = await webhook_trial.join()
    await webhook_trial.advance(hours=10)  # 20:00 in New York: the evening reminder
    reminder = user.last_bot_message
    assert "Time for your study cream" in reminder.text
    answers_before = len(user.callback_answers)

    await user.press(APPLIED_NOW, message_id=reminder.message_id)
    await user.wait_for(lambda u: len(u.callback_answers) == answers_before + 1)
    assert "Saved" in user.message(reminder.message_id).text
    answers = [c for c in telegram.calls if c.method == "answerCallbackQuery"]
    assert answers and all(c.via_webhook_reply and c.status == 200 for c in answers), \
        "every button (consent, the reminder) was answered in the webhook's acknowledgement, none by a call of its own"
    assert [e.kind for e in await webhook_trial.diary()] == ["applied"]


async def test_an_update_is_acknowledged_only_once_it_was_handled(
        webhook_trial: Trial, telegram: TelegramWorld) -> None:
    """So an update inside a process that dies is sent again by Telegram, not lost."""
    user = await webhook_trial.join()
    await webhook_trial.advance(hours=10)
    reminder = user.last_bot_message
    telegram.faults.fail_next("editMessageText", mode="timeout")  # Telegram slow to confirm the edit

    await user.press(APPLIED_NOW, message_id=reminder.message_id)
    await until(lambda: any(c.method == "editMessageText" and c.injected for c in telegram.calls))
    assert [u.get("callback_query", {}).get("data", "")[:2] for u in telegram.pending_updates] == ["d:"], \
        "while the tap is being handled, Telegram still holds it"
    assert [e.kind for e in await webhook_trial.diary()] == ["applied"]

    telegram.faults.released.set()  # the edit's answer never comes: the bot carries on without it
    await until(lambda: not telegram.pending_updates)
    await user.wait_for(lambda u: u.callback_answers)
    assert [e.kind for e in await webhook_trial.diary()] == ["applied"]


async def test_a_request_that_is_not_an_update_is_refused_and_changes_nothing(
        webhook_trial: Trial, telegram: TelegramWorld) -> None:
    hook = webhook_trial.webhook
    async with aiohttp.ClientSession() as http:
        for body in (b"not json", b"[1, 2]", b'"text"', b'{"message": {}}'):
            async with http.post(hook.url, data=body, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET,
                                                               "Content-Type": "application/json"}) as response:
                assert response.status == 400
    user = await webhook_trial.join()  # and the bot still serves
    assert user.last_bot_message is not None
