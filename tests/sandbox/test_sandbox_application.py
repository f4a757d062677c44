"""A real PTB Application polling the stand-in, with simulated users talking to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from sandbox.chat import BotEventTimeout
from sandbox.server import BotApiServer
from sandbox.world import TelegramWorld


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None
    await context.bot.send_message(
        update.effective_chat.id, f"<b>Welcome</b>, code {' '.join(context.args or [])}",
        parse_mode="HTML",
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Applied now", callback_data="d:now"),
                                            InlineKeyboardButton("Help", url="https://example.org/help")]]),
    )


async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("Recorded")
    await query.edit_message_text(f"You chose {query.data}")


@pytest.fixture
async def app(world: TelegramWorld, server: BotApiServer) -> AsyncIterator[Application]:
    application = ApplicationBuilder().token(world.token).base_url(server.base_url).base_file_url(
        server.base_file_url).build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(pressed))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=5)
        yield application
        await application.updater.stop()
        await application.stop()
    assert world.rejected_calls == []


async def test_start_with_payload_then_button_press(world: TelegramWorld, app: Application) -> None:
    ana = world.add_user(user_id=1001, first_name="Ana")
    await ana.send_text("/start abc-123")
    welcome = await ana.next_bot_event()
    assert welcome.text == "Welcome, code abc-123"
    assert welcome.html == "<b>Welcome</b>, code abc-123"
    assert welcome.buttons == [[("Applied now", "d:now"), ("Help", "https://example.org/help")]]

    query_id = await ana.press("Applied now")
    edit = await ana.next_bot_event()
    assert edit.message_id == welcome.message_id
    assert edit.text == "You chose d:now" and edit.buttons == []
    assert edit.edits[0].text == "Welcome, code abc-123"
    await ana.wait_for(lambda chat: chat.callback_answers == [(query_id, "Recorded", False)])
    with pytest.raises(LookupError):
        await ana.press("Applied now")  # the edit removed the keyboard


async def test_command_addressed_to_the_bot_by_name(world: TelegramWorld, app: Application) -> None:
    bo = world.add_user(user_id=1002, first_name="Bo")
    await bo.send_text(f"/start@{world.bot_username} xyz")
    assert (await bo.next_bot_event()).text == "Welcome, code xyz"


async def test_waiting_times_out_with_a_dump_of_the_chat(world: TelegramWorld, app: Application) -> None:
    cy = world.add_user(user_id=1003, first_name="Cy")
    await cy.send_text("hello?")  # no handler answers plain text
    with pytest.raises(BotEventTimeout) as caught:
        await cy.next_bot_event(timeout=0.2)
    assert "#1 user: 'hello?'" in str(caught.value)
