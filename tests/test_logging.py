"""Logs carry neither the bot token nor what participants write."""

from __future__ import annotations

import io
import logging

import pytest

from bot.logging_setup import configure_logging
from tests.trial import Trial


@pytest.fixture
def captured_log():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


async def test_a_whole_session_at_debug_level_leaks_neither_token_nor_text(trial: Trial, captured_log) -> None:
    configure_logging("DEBUG", secrets=[trial.world.token], stream=captured_log)
    logging.getLogger("httpx").setLevel(logging.INFO)  # the noisiest case: every request URL
    user = await trial.join()
    await user.press("✅ I put it on now")
    await user.next_bot_event()
    await user.send_text("my rash is worse near my left eye")
    await user.next_bot_event()
    log = captured_log.getvalue()
    assert "[token]" in log, "the httpx request lines were logged, with the token scrubbed"
    assert trial.world.token not in log and "SANDBOX-TOKEN" not in log
    assert "left eye" not in log


def test_tokens_are_scrubbed_from_messages_and_tracebacks(captured_log) -> None:
    token = "987654321:AAHk-very_secret_token_value"
    configure_logging("INFO", secrets=[token], stream=captured_log)
    log = logging.getLogger("trialbot.test")
    log.info("calling https://api.telegram.org/bot%s/getMe", token)
    try:
        raise RuntimeError(f"The token `{token}` was rejected by the server.")
    except RuntimeError:
        log.exception("start-up failed")
    log.warning("another bot's token 123456789:ABCDEFGHIJKLMNOP leaked")
    text = captured_log.getvalue()
    assert "very_secret" not in text and "ABCDEFGHIJKLMNOP" not in text
    assert text.count("[token]") == 3
