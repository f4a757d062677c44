"""Joining the study: /start with the invite code, the consent text, Agree or Decline.

Before consent, the chat is a stranger's: nothing is written about it. The invite code travels in
the consent buttons themselves, so no half-finished sign-up needs to be remembered; wrong codes,
from /start or from forged buttons alike, count towards the chat's lock-out and the one over every
chat (study/strangers.py, in the database under the chat's salted hash). An invite whose
participant left the study, or joined with another, is void (study/invites.py): it answers as a
wrong code does. A Decline pressed in a chat that is not the participant's, on the invite of a
participant who has joined, changes nothing and tells nobody.
"""

from __future__ import annotations

from telegram import Update

from bot import callback_data as cb
from bot import exactly_once
from bot.access import access_ended, reply_to_stranger, stranger_language
from bot.handlers.diary import diary_buttons
from bot.replies import render, show
from bot.runtime import TrialbotContext
from bot.services import services
from messages.renderer import Button
from study import consent, invites, outbox, participants, staff, strangers
from study.consent import ConsentOutcome
from study.invites import InviteState
from study.models import LockoutScope, StrangerEvent

_PROBLEM_TEMPLATES = {
    ConsentOutcome.INVITE_UNKNOWN: "invite_wrong",
    ConsentOutcome.INVITE_USED: "invite_used",
    ConsentOutcome.INVITE_EXPIRED: "invite_expired",
    ConsentOutcome.CHAT_IN_USE: "invite_chat_in_use",
    ConsentOutcome.NOT_ELIGIBLE: "not_active",
}
# Outcomes that answer the press (an Agree pressed again answers as the first did).
_ANSWERED = (ConsentOutcome.AGREED, ConsentOutcome.DECLINED, ConsentOutcome.ALREADY_AGREED)
_STATE_OUTCOMES = {
    InviteState.UNKNOWN: ConsentOutcome.INVITE_UNKNOWN,
    InviteState.USED: ConsentOutcome.INVITE_USED,
    InviteState.EXPIRED: ConsentOutcome.INVITE_EXPIRED,
}


def _once(handler):
    """Before the chat belongs to anyone, the update may still have been handled before (the
    invitee's Agree, delivered twice): answered from the ledger then. Strangers' updates are
    never written there (see bot/exactly_once.py)."""

    async def wrapper(update: Update, context: TrialbotContext) -> None:
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or chat.type != "private":
            return
        key = exactly_once.key_of(update, context)
        async with services(context).db.read() as session:
            seen = await exactly_once.seen_before(session, key, context)
        await exactly_once.once(update, context, key, seen, lambda: handler(update, context))

    wrapper.__name__ = wrapper.__qualname__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


@_once
async def start(update: Update, context: TrialbotContext) -> None:
    chat, user = update.effective_chat, update.effective_user
    svc = services(context)
    now = svc.clock.now()
    code = context.args[0] if context.args else None
    async with svc.db.read() as session:
        participant = await participants.by_chat(session, chat.id)
        member = await staff.by_telegram_id(session, user.id)
    if participant is not None:
        if participant.status in participants.SERVED_STATUSES:
            await show(update, context, render(context, "welcome_back", participant.language, {}, diary_buttons()))
        else:
            await show(update, context, render(context, "not_active", participant.language))
        return
    if code is None:
        if member is not None and member.active:
            await show(update, context, render(context, "staff_welcome", member.language, {"name": member.name}))
        elif member is not None:
            await access_ended(update, context, member)
        else:
            await reply_to_stranger(update, context)
        return
    if await _locked_out(update, context):
        return
    async with svc.db.read() as session:
        found = await invites.look_up(session, code, now=now)
    if found.state is not InviteState.VALID:
        await _invite_problem(update, context, _STATE_OUTCOMES[found.state])
        return
    # A valid invite leaves the chat's count of wrong codes as it is: guessing cannot clear itself.
    person = found.participant
    buttons = [[Button("agree", cb.CONSENT_AGREE + code)], [Button("decline", cb.CONSENT_DECLINE + code)]]
    await show(update, context, render(context, "consent", person.language, {
        "applications_per_day": svc.protocol.treatment.applications_per_day,
        "pregnancy_tests": svc.protocol.pregnancy_tests.enabled,
    }, buttons))


async def _locked_out(update: Update, context: TrialbotContext, *, known: bool = False) -> bool:
    """Is this chat locked out (its own lock-out, or the one over every chat)? Then it is told so,
    and counted. `known`: the caller has just locked it out."""
    svc = services(context)
    now = svc.clock.now()
    if not known:
        async with svc.db.read() as session:
            if await svc.lockout.locked(session, update.effective_chat.id, now) is None:
                return False
    async with svc.db.transaction() as session:
        await strangers.count(session, StrangerEvent.LOCKED_OUT, now.date())
    await show(update, context, render(context, "invite_locked", stranger_language(update, context),
                                       {"lockout_minutes": svc.protocol.enrolment.lockout_minutes}))
    return True


async def _invite_problem(update: Update, context: TrialbotContext, outcome: ConsentOutcome) -> None:
    svc = services(context)
    now = svc.clock.now()
    if outcome is ConsentOutcome.INVITE_UNKNOWN:
        async with svc.db.transaction() as session:
            await strangers.count(session, StrangerEvent.WRONG_CODE, now.date())
            lock = await svc.lockout.record_failure(session, update.effective_chat.id, now,
                                                    update=f"{context.bot.id}:{update.update_id}")
            if lock is not None and lock.scope is LockoutScope.ALL:
                # Many chats guessing at once: the team hears, as new invites wait until it ends.
                await outbox.notify_staff(
                    session, event_key=f"invites-locked:{lock.since.isoformat()}", template_id="staff_invites_locked",
                    variables={"until_at": lock.until.isoformat(), "count": svc.lockout.rules.all_chats,
                               "window_minutes": svc.protocol.enrolment.wrong_code_window_minutes}, now=now)
        if lock is not None:
            svc.outbox_ready.set()
            await _locked_out(update, context, known=True)
            return
    await show(update, context, render(context, _PROBLEM_TEMPLATES[outcome], stranger_language(update, context)))


@_once
async def consent_answer(update: Update, context: TrialbotContext) -> None:
    query = update.callback_query
    chat, user = update.effective_chat, update.effective_user
    if await _locked_out(update, context):
        return
    svc = services(context)
    now = svc.clock.now()
    code = query.data[len(cb.CONSENT_AGREE):]
    async with exactly_once.effects(update, context, claim=False) as fx:
        session = fx.session
        if query.data.startswith(cb.CONSENT_AGREE):
            result = await consent.agree(session, code, chat_id=chat.id, user_id=user.id, now=now)
        else:
            result = await consent.decline(session, code, chat_id=chat.id, now=now)
        if result.outcome in _ANSWERED:
            # Only now is the chat someone's: the update is claimed (a second delivery of the
            # same Agree is answered as the first was, not with "this invite was used").
            await exactly_once.claim_now(update, context, fx, participant_id=result.participant.id)
            declined = result.outcome is ConsentOutcome.DECLINED
            fx.reply = render(context, "consent_declined" if declined else "consent_agreed",
                              result.participant.language, {}, () if declined else diary_buttons())
        if result.outcome in (ConsentOutcome.AGREED, ConsentOutcome.DECLINED):
            await outbox.notify_staff(
                session, event_key=f"consent:{result.participant.study_id}:{now.isoformat()}",
                template_id="staff_consent", variables={"study_id": result.participant.study_id,
                                                        "decision": result.outcome.value},
                now=now,
            )
    if result.outcome in (ConsentOutcome.AGREED, ConsentOutcome.DECLINED):
        svc.outbox_ready.set()
    if result.outcome in _PROBLEM_TEMPLATES:
        await _invite_problem(update, context, result.outcome)
        return
    if result.outcome is ConsentOutcome.IGNORED:
        # Someone else's chat declined a joined participant's invite: this chat gets no messages,
        # which is all it is told; nothing was recorded, and the study team hears nothing.
        await show(update, context, render(context, "consent_declined", stranger_language(update, context)))
        return
    await show(update, context, fx.reply)
