"""/help and /contact: what the bot does and how to reach the study team, at any time."""

from __future__ import annotations

from telegram import Update

from bot.access import participant_only
from bot.handlers.diary import diary_buttons
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from study.models import Participant


@participant_only
async def help_command(update: Update, context: TrialbotContext, participant: Participant) -> None:
    rules = services(context).protocol.diary
    await show(update, context, render(context, "help", participant.language, {
        "undo_minutes": rules.undo_minutes, "backfill_days": rules.backfill_days,
    }, diary_buttons()))


@participant_only
async def contact(update: Update, context: TrialbotContext, participant: Participant) -> None:
    await show(update, context, render(context, "contact", participant.language))
