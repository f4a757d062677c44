"""Storage: the tables of the study record.

Clinical records (diary entries, consent decisions) and the audit trail are append-only: the
migrations install database triggers that refuse UPDATE and DELETE on them, so a correction can
only be a new row that points at the one it corrects. Rows that carry current state
(participants, staff, invites, outbox) change in place, and every such change is written to the
audit trail with its old and new values.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, TypeAlias

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# What the JSON columns hold, as the code writes them and json.loads gives them back.
# A JSON object whose values are of several JSON types (template variables, answers, audit values).
JSONObject: TypeAlias = dict[str, Any]
# Buttons queued with a message: rows of [template block name, callback data, variables], JSON
# arrays (lists, not tuples, once read back).
ButtonRows: TypeAlias = list[list[list[Any]]]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _in(column: str, values: type[StrEnum] | tuple[StrEnum, ...]) -> str:
    """The CHECK that `column` holds one of `values` (an enum, or some of its members): the SQL is
    made from the enum, so the enum is the one list of what the column may hold."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _sql_in(column: str, values: tuple[StrEnum, ...]) -> str:
    return _in(column, values)


class ParticipantStatus(StrEnum):
    """A participant's place in the study: invited -> active <-> paused; withdrawn and completed
    are final. Named groups: SERVED (the bot writes to them, as far as each message allows), LEFT
    (final)."""

    INVITED = "invited"  # enrolled by the team, not joined yet (no consent)
    ACTIVE = "active"
    PAUSED = "paused"  # asked the bot to stop its messages (/stop, or the team's /pause)
    WITHDRAWN = "withdrawn"
    COMPLETED = "completed"

    SERVED: ClassVar[tuple[ParticipantStatus, ...]]
    LEFT: ClassVar[tuple[ParticipantStatus, ...]]


ParticipantStatus.SERVED = (ParticipantStatus.ACTIVE, ParticipantStatus.PAUSED)
ParticipantStatus.LEFT = (ParticipantStatus.WITHDRAWN, ParticipantStatus.COMPLETED)


class TreatmentState(StrEnum):
    """Where a participant is in their treatment course (the cream), beside their status in the
    study (participants.status): what the scheduler plans follows it (scheduler/planner.py)."""

    ON_TREATMENT = "on_treatment"
    INTERRUPTED = "interrupted"  # the cream stops; visits, check-ins and safety go on
    OFF_TREATMENT = "off_treatment"  # the treatment period is over: follow-up
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class TreatmentReason(StrEnum):
    """Why a treatment course changed."""

    PREGNANCY = "pregnancy"
    INFECTION = "infection"
    ADVERSE_EVENT = "adverse_event"
    INVESTIGATOR_DECISION = "investigator_decision"
    END_OF_TREATMENT = "end_of_treatment"
    OTHER = "other"




# A study id as stored (study.participants.STUDY_ID): capitals, so the unique constraint is unique
# whatever the case. Each database's own pattern match (migration 0014).
STUDY_ID_CHECKS = {
    "postgresql": "study_id ~ '^[A-Z0-9][A-Z0-9_-]{0,31}$'",
    "sqlite": ("length(study_id) BETWEEN 1 AND 32 AND study_id GLOB '[A-Z0-9]*' "
               "AND study_id NOT GLOB '*[^A-Z0-9_-]*'"),
}


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (CheckConstraint(_in("status", ParticipantStatus), name="status"),
                      CheckConstraint(_in("treatment", TreatmentState), name="treatment"),
                      CheckConstraint(f"treatment_reason IS NULL OR {_in('treatment_reason', TreatmentReason)}",
                                      name="treatment_reason"),
                      *(CheckConstraint(sql, name="study_id").ddl_if(dialect=dialect)
                        for dialect, sql in STUDY_ID_CHECKS.items()))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(String(32), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    wocbp: Mapped[bool] = mapped_column(Boolean, default=False)
    reminder_times: Mapped[str] = mapped_column(String(128))  # "08:00,20:00", participant-local
    status: Mapped[str] = mapped_column(String(16), default=ParticipantStatus.INVITED)  # ParticipantStatus
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when the bot may write to them (consent or /resume): nothing before is reminded.
    active_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when Telegram says they blocked the bot; cleared when they write again.
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Scheduling state, derived and rebuildable: when the planner must next look at them.
    next_plan_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # The treatment course now (its history, with who, when and why: treatment_changes).
    treatment: Mapped[str] = mapped_column(String(16), default=TreatmentState.ON_TREATMENT)
    treatment_reason: Mapped[str | None] = mapped_column(String(24))
    treatment_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TreatmentChange(Base):
    """One change of a participant's treatment course: to which state, why (a reason code and the
    words of whoever changed it), who, and when (UTC, and the participant's zone and day).
    Append-only; the current state is also kept on the participant for the scheduler."""

    __tablename__ = "treatment_changes"
    __table_args__ = (CheckConstraint(_in("state", TreatmentState), name="state"),
                      CheckConstraint(_in("previous", TreatmentState), name="previous"),
                      CheckConstraint(_in("reason", TreatmentReason), name="reason"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    previous: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(24))
    reason_text: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(String(64))  # actor, e.g. staff:3 or participant:P001
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256; the code itself is never stored
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Consent(StrEnum):
    """A participant's answer to the consent question."""

    AGREED = "agreed"
    DECLINED = "declined"


class ConsentDecision(Base):
    __tablename__ = "consent_decisions"
    __table_args__ = (CheckConstraint(_in("decision", Consent), name="decision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    invite_id: Mapped[int] = mapped_column(ForeignKey("invites.id"))
    decision: Mapped[str] = mapped_column(String(16))  # Consent
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))


class StaffRole(StrEnum):
    """A staff member's role: what they may do and receive (study/roles.py)."""

    COORDINATOR = "coordinator"
    INVESTIGATOR = "investigator"
    MONITOR = "monitor"


class StaffMember(Base):
    """A member of the study team. `active` and `role` are their current state, changed in place;
    every change is in the audit trail with its old and new values, who and why (study/staff.py)."""

    __tablename__ = "staff"
    __table_args__ = (CheckConstraint(_in("role", StaffRole), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # StaffRole
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StaffChangeKind(StrEnum):
    """What a proposed change to the study team does (/staff in Telegram)."""

    ADD = "add"  # add a person (or give a deactivated member access again), with a role
    ROLE = "role"  # change a member's role
    DEACTIVATE = "deactivate"  # end a member's access: they receive nothing and can do nothing


class StaffChangeState(StrEnum):
    PROPOSED = "proposed"  # shown with Confirm / Cancel
    CONFIRMED = "confirmed"  # made (and audited, old and new values) when Confirm was pressed
    CANCELLED = "cancelled"


class StaffChange(Base):
    """A change to the study team proposed in Telegram, waiting for its Confirm: who proposed it,
    what (the person's Telegram id and name for an addition, the member for a role change or a
    deactivation), and what became of it. Buttons carry only its id. The team itself changes, and
    the audit trail records it, when it is confirmed (study/staff.py)."""

    __tablename__ = "staff_changes"
    __table_args__ = (
        CheckConstraint(_sql_in("kind", tuple(StaffChangeKind)), name="kind"),
        CheckConstraint(_sql_in("state", tuple(StaffChangeState)), name="state"),
        CheckConstraint(f"role IS NULL OR {_in('role', StaffRole)}", name="role"),
        CheckConstraint("(kind = 'add' AND telegram_user_id IS NOT NULL AND name IS NOT NULL) OR "
                        "(kind <> 'add' AND staff_id IS NOT NULL)", name="target"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=StaffChangeState.PROPOSED)
    proposed_by: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))  # the member it changes
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger)  # who is added
    name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(16))  # the new role (an addition's: at Confirm)
    reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DiaryKind(StrEnum):
    """What a diary entry says. DOSES: what became of a dose (the rest: a withdrawal, which takes
    an earlier entry back)."""

    APPLIED = "applied"
    MISSED = "missed"  # the participant says they missed it
    MISSING = "missing"  # the system: the dose's window closed with nothing recorded
    WITHDRAWAL = "withdrawal"  # the participant's /undo of an earlier entry (`supersedes_id`)

    DOSES: ClassVar[tuple[DiaryKind, ...]]


DiaryKind.DOSES = (DiaryKind.APPLIED, DiaryKind.MISSED, DiaryKind.MISSING)


class DiarySource(StrEnum):
    """How a diary entry came: a diary button, a reminder's button, a command (/undo), or the
    system (a slot recorded missing when its window closed)."""

    BUTTON = "button"
    REMINDER = "reminder"
    COMMAND = "command"
    SYSTEM = "system"


class DiaryEntry(Base):
    """One statement by a participant about their treatment: applied, missed, or a withdrawal.

    A withdrawal (the participant's /undo) is itself an entry whose `supersedes_id` names the entry
    it takes back; `supersedes_id` is unique, so an entry can be taken back only once.
    """

    __tablename__ = "diary_entries"
    # A participant's entries by day: the planner reads only the last few days of each
    # (scheduler/planner.py diary_since), however long the diary (migration 0015).
    __table_args__ = (Index("ix_diary_entries_participant_day", "participant_id", "local_date"),
                      CheckConstraint(_in("kind", DiaryKind), name="kind"),
                      CheckConstraint(_in("source", DiarySource), name="source"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    kind: Mapped[str] = mapped_column(String(16))  # DiaryKind
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when the participant says it happened
    local_date: Mapped[date] = mapped_column(Date)  # the participant's calendar day it belongs to
    timezone: Mapped[str] = mapped_column(String(64))  # the participant's zone at recording
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # DiarySource
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    missed_reason: Mapped[str | None] = mapped_column(String(16))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("diary_entries.id"), unique=True)
    recorded_by: Mapped[str] = mapped_column(String(64))  # actor, e.g. participant:P001
    # The same button pressed twice carries the same key, so it cannot create two entries.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)


class AuditEntry(Base):
    """The audit trail: who did what to which record, when and why, chained by SHA-256."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    old_values: Mapped[JSONObject | None] = mapped_column(JSON)
    new_values: Mapped[JSONObject | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The content hash of the record this entry creates (study/record_hashes.py), or none.
    content: Mapped[JSONObject | None] = mapped_column(JSON(none_as_null=True))


class OutboxStatus(StrEnum):
    """Where an outbox message is: pending -> sending (claimed by the dispatcher, which commits
    before it calls Telegram) -> sent, failed or skipped (SETTLED: final). A row left sending by a
    crash goes back to pending when a process becomes the leader."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # not sent, on purpose: stale, its reason gone, the recipient left...

    SETTLED: ClassVar[tuple[OutboxStatus, ...]]


OutboxStatus.SETTLED = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.SKIPPED)


class OutboxKind(StrEnum):
    """What an outbox message is for. Each kind has its row in study/still_wanted.py `RULES`: whether
    it goes to a paused participant, the permission needed to receive it, what makes it unwanted
    by the time it is due (a dose recorded, a visit moved, an alert acknowledged...); and its
    `Urgency` in `URGENCY` below (what goes first, and what is paced as bulk)."""

    NOTICE = "notice"  # anything not named below
    REMINDER = "reminder"  # a dose reminder
    NUDGE = "nudge"  # the second reminder of a dose not yet recorded
    VISIT_REMINDER = "visit_reminder"
    PREGNANCY_REMINDER = "pregnancy_reminder"
    CHECKIN = "checkin"  # the protocol's scheduled check-in
    CHECKIN_EXPIRED = "checkin_expired"
    TREATMENT = "treatment"  # the participant told of a change of their treatment course
    ALERT = "alert"  # a copy of a safety alert to a staff member
    ALERT_CLOSED = "alert_closed"  # an acknowledged alert's copy edited
    PARTICIPANT_MESSAGE = "participant_message"  # a participant's words passed on to the team
    MEDIA_COPY = "media_copy"  # their photo, voice note... copied to the team
    MESSAGE_RECEIPT = "message_receipt"  # the participant told their message reached the team
    REPLY = "reply"  # the team's /reply
    BROADCAST = "broadcast"
    DIGEST = "digest"  # the morning staff digest
    ANCHOR = "anchor"  # the investigator's daily audit anchor


class Urgency(IntEnum):
    """Which due outbox messages go first (study/outbox.py `due`): a safety alert never waits
    behind a broadcast to everyone queued before it (20,000 of them take eleven minutes at
    Telegram's pace, and staff must hear of a safety signal within a minute)."""

    SAFETY = 0  # a safety alert's copy to staff
    CONVERSATION = 1  # one person's exchange with the team: their words, the team's reply, a notice
    SCHEDULED = 2  # what the protocol's calendar sends: reminders, check-ins, digests
    BULK = 3  # a broadcast to many


#: Each kind's urgency. Scheduled and bulk messages are also paced as bulk at the send limiter:
#: behind replies, and at most one a second to a chat (bot/send_limiter.py).
URGENCY: dict[OutboxKind, Urgency] = {
    OutboxKind.ALERT: Urgency.SAFETY,
    OutboxKind.ALERT_CLOSED: Urgency.CONVERSATION,
    OutboxKind.PARTICIPANT_MESSAGE: Urgency.CONVERSATION,
    OutboxKind.MEDIA_COPY: Urgency.CONVERSATION,
    OutboxKind.MESSAGE_RECEIPT: Urgency.CONVERSATION,
    OutboxKind.REPLY: Urgency.CONVERSATION,
    OutboxKind.TREATMENT: Urgency.CONVERSATION,
    OutboxKind.NOTICE: Urgency.CONVERSATION,
    OutboxKind.CHECKIN_EXPIRED: Urgency.CONVERSATION,
    OutboxKind.REMINDER: Urgency.SCHEDULED,
    OutboxKind.NUDGE: Urgency.SCHEDULED,
    OutboxKind.VISIT_REMINDER: Urgency.SCHEDULED,
    OutboxKind.PREGNANCY_REMINDER: Urgency.SCHEDULED,
    OutboxKind.CHECKIN: Urgency.SCHEDULED,
    OutboxKind.DIGEST: Urgency.SCHEDULED,
    OutboxKind.ANCHOR: Urgency.SCHEDULED,
    OutboxKind.BROADCAST: Urgency.BULK,
}


class OutboxMessage(Base):
    """A message the bot starts (not a direct reply), waiting to be delivered or delivered.

    `dedup_key` makes queueing idempotent: planning the same thing twice finds the row already there.
    """

    __tablename__ = "outbox"
    __table_args__ = (CheckConstraint(_in("status", OutboxStatus), name="status"),
                      CheckConstraint(_in("kind", OutboxKind), name="kind"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default=OutboxKind.NOTICE)  # OutboxKind
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    template_id: Mapped[str] = mapped_column(String(64))
    variables: Mapped[JSONObject] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING, index=True)  # OutboxStatus
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the message is meant for: later than `late_after` it says it is late; later than
    # `stale_after` it is not sent at all (a reminder for a dose long past helps nobody).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    late_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stale_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    buttons: Mapped[ButtonRows | None] = mapped_column(JSON)  # rows of [label block, callback data, variables]
    disable_notification: Mapped[bool] = mapped_column(Boolean, default=False)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(256))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    template_hash: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    # A participant's message passed on to the study team: the row is one part of it, or the copy
    # of their photo or voice note. When every part has reached someone, they are told so.
    participant_message_id: Mapped[int | None] = mapped_column(ForeignKey("participant_messages.id"), index=True)
    # Set: this row edits that earlier message of the recipient's chat instead of sending a new
    # one (an alert's copies, once someone acknowledged it: study/alerts.py `close_copies`).
    edit_message_id: Mapped[int | None] = mapped_column(BigInteger)


class StrangerEvent(StrEnum):
    """What is counted of people outside the study, per day."""

    MESSAGE = "message"  # wrote to the bot
    WRONG_CODE = "wrong_code"  # tried an invite code that is not one
    LOCKED_OUT = "locked_out"  # tried a code while locked out


class StrangerCount(Base):
    """How often people outside the study wrote, per day: counts only, nothing about them."""

    __tablename__ = "stranger_counts"
    __table_args__ = (UniqueConstraint("day", "kind"), CheckConstraint(_in("kind", StrangerEvent), name="kind"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(32))  # StrangerEvent
    count: Mapped[int] = mapped_column(Integer, default=0)


class WrongCode(Base):
    """A wrong invite code tried from a chat outside the study, counted towards the lock-out
    (study/strangers.py). The chat is only its salted hash (HMAC-SHA256 under the deployment's
    salt, `hash_salts`), the update only a hash too (a redelivered update counts once); nothing
    else is kept, and rows older than the lock-out's window are deleted."""

    __tablename__ = "wrong_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_hash: Mapped[str] = mapped_column(String(64), index=True)
    tried_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    update_hash: Mapped[str] = mapped_column(String(64), unique=True)


class LockoutScope(StrEnum):
    """Whom a wrong-code lock-out stops: one chat (too many wrong codes from it), or every chat
    outside the study (too many wrong codes from all of them together)."""

    CHAT = "chat"
    ALL = "all"


class CodeLockout(Base):
    """A wrong-code lock-out: until `until`, the chat (its salted hash) or, for scope `all`,
    every chat not in the study, gets "too many tries" for any invite code. Deleted once over
    and out of the counting window."""

    __tablename__ = "code_lockouts"
    __table_args__ = (
        CheckConstraint(_in("scope", LockoutScope), name="scope"),
        CheckConstraint("(scope = 'chat' AND chat_hash IS NOT NULL) OR (scope = 'all' AND chat_hash IS NULL)",
                        name="chat"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(8))
    chat_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class HashSalt(Base):
    """The deployment's secret salt for hashing what must not be kept in the clear (strangers'
    chat ids), made by the migration that made this table; one row per purpose."""

    __tablename__ = "hash_salts"

    purpose: Mapped[str] = mapped_column(String(32), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))  # 32 random bytes, hex


class EnrolmentStep(StrEnum):
    """The question an enrolment in the staff chat (/enroll P001) is on."""

    TIMEZONE = "timezone"
    LANGUAGE = "language"
    WOCBP = "wocbp"
    TIMES = "times"
    CONFIRM = "confirm"


class EnrolmentDraftState(StrEnum):
    """An enrolment in the staff chat: still being answered, done (the participant enrolled),
    cancelled by the staff member, or replaced by their next /enroll."""

    OPEN = "open"
    ENROLLED = "enrolled"
    CANCELLED = "cancelled"
    REPLACED = "replaced"


class EnrolmentDraft(Base):
    """A staff member's /enroll conversation, one question at a time: the answers so far and the
    question it is on. Kept in the database, so it survives a restart and any process can take
    the next answer; nothing is enrolled until Confirm (then `participant_id`)."""

    __tablename__ = "enrolment_drafts"
    __table_args__ = (
        CheckConstraint(_in("step", EnrolmentStep), name="step"),
        CheckConstraint(_in("state", EnrolmentDraftState), name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    study_id: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(16), default=EnrolmentStep.TIMEZONE)
    state: Mapped[str] = mapped_column(String(16), default=EnrolmentDraftState.OPEN, index=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(8))
    wocbp: Mapped[bool | None] = mapped_column(Boolean)
    reminder_times: Mapped[str | None] = mapped_column(String(128))  # "08:00,20:00"
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))


class DeliveryStep(StrEnum):
    """A step in the life of an outbox message (delivery_events.event)."""

    SENT = "sent"
    RETRY = "retry"  # a try failed in a way worth trying again
    FAILED = "failed"
    SKIPPED = "skipped"
    ANSWERED = "answered"  # the participant answered it (a reminder's button)


class DeliveryEvent(Base):
    """The life of an outbox message, one row per step (DeliveryStep): sent, retry, failed,
    skipped, answered. Append-only, so `trialbot deliveries` can show what happened and why."""

    __tablename__ = "delivery_events"
    __table_args__ = (CheckConstraint(_in("event", DeliveryStep), name="event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(16))  # DeliveryStep
    detail: Mapped[str | None] = mapped_column(String(256))


class SentMessage(Base):
    """The record of every message the bot sent: which template, in which approved version (its
    SHA-256), in which language, to whom, and when. Append-only, like the clinical records.

    The recipient is a participant or a staff member; someone outside the study is recorded as
    'stranger' with no id at all.
    """

    __tablename__ = "sent_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    template_id: Mapped[str] = mapped_column(String(64))
    template_hash: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    draft: Mapped[bool] = mapped_column(Boolean, default=False)  # unapproved text, sandbox only
    recipient: Mapped[str] = mapped_column(String(16))  # participant | staff | stranger
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    via: Mapped[str] = mapped_column(String(16))  # reply | edit | alert (a button's answer) | outbox
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)


class VisitStatus(StrEnum):
    """Where a visit stands. OPEN: still to happen (reminded); CLOSED: cancelled or done."""

    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"  # the participant pressed Confirm
    RESCHEDULE_REQUESTED = "reschedule_requested"  # the participant asked for another date
    CANCELLED = "cancelled"
    DONE = "done"

    OPEN: ClassVar[tuple[VisitStatus, ...]]
    CLOSED: ClassVar[tuple[VisitStatus, ...]]


VisitStatus.OPEN = (VisitStatus.SCHEDULED, VisitStatus.CONFIRMED, VisitStatus.RESCHEDULE_REQUESTED)
VisitStatus.CLOSED = (VisitStatus.CANCELLED, VisitStatus.DONE)


class Visit(Base):
    """A study visit on the participant's calendar. Current state, changed in place: every
    create, move, cancel and status change is audited with old and new values. `revision` grows
    with each move, so reminders planned for an earlier date are recognised and not sent."""

    __tablename__ = "visits"
    __table_args__ = (UniqueConstraint("participant_id", "name"), CheckConstraint(_in("status", VisitStatus), name="status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    name: Mapped[str] = mapped_column(String(16))  # baseline, week4, ... or an extra visit's name
    label: Mapped[str] = mapped_column(String(64))  # for the study team
    scheduled_date: Mapped[date] = mapped_column(Date, index=True)  # participant-local day
    scheduled_time: Mapped[time | None] = mapped_column(Time)  # participant-local, if agreed
    # The protocol's target day and window (±days); none for extra visits.
    target_date: Mapped[date | None] = mapped_column(Date)
    window_days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), default=VisitStatus.SCHEDULED)  # VisitStatus
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # created, moved or status changed


class PregnancyResult(StrEnum):
    """A pregnancy test's answer. A result (negative or positive) counts the next test from it."""

    NEGATIVE = "negative"
    POSITIVE = "positive"
    NOT_YET = "not_yet"  # not taken yet: asked again


class PregnancySource(StrEnum):
    """How a pregnancy test answer came: a reminder's buttons, or recorded by the study team."""

    REMINDER = "reminder"
    STAFF = "staff"


class PregnancyTest(Base):
    """One answer about a pregnancy test. Append-only (a database trigger refuses UPDATE and
    DELETE). `idempotency_key` names the reminder message answered, so a double tap stores one."""

    __tablename__ = "pregnancy_tests"
    __table_args__ = (CheckConstraint(_in("result", PregnancyResult), name="result"),
                      CheckConstraint(_in("source", PregnancySource), name="source"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    result: Mapped[str] = mapped_column(String(16))  # PregnancyResult
    local_date: Mapped[date] = mapped_column(Date)  # the participant's day of the answer
    timezone: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # PregnancySource
    recorded_by: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)


class ContraceptionAnswer(Base):
    """The protocol's contraception question, asked with a negative pregnancy test when
    `[pregnancy_tests] ask_contraception` is on: does the participant use the contraception the
    protocol requires? Append-only; `idempotency_key` names the test reminder answered."""

    __tablename__ = "contraception_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    uses: Mapped[bool] = mapped_column(Boolean)
    due_date: Mapped[date] = mapped_column(Date)  # the test calendar day it was asked with
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)


class CheckinKind(StrEnum):
    """A check-in's questions: all of them, or the scores only."""

    FULL = "full"
    SCORES = "scores"


class CheckinSource(StrEnum):
    """What started a check-in: /symptoms, or the protocol's scheduled check-in."""

    COMMAND = "command"
    SCHEDULED = "scheduled"


class CheckinEnding(StrEnum):
    """Why a check-in was never saved (incomplete_checkins.reason)."""

    EXPIRED = "expired"
    RESTARTED = "restarted"


def _checkin_kind_and_source() -> tuple[CheckConstraint, ...]:
    """A check-in's, a draft's and an unfinished one's kind and source (each table its own)."""
    return (CheckConstraint(_in("kind", CheckinKind), name="kind"),
            CheckConstraint(_in("source", CheckinSource), name="source"))


class CheckIn(Base):
    """A completed symptom check-in, saved only when the participant confirms it (a check-in in
    progress lives in `checkin_drafts`, so nothing is ever half-saved). Append-only."""

    __tablename__ = "checkins"
    # The planner's "last full check-in" is the end of one range of this index (migration 0015).
    __table_args__ = (Index("ix_checkins_participant_kind_submitted", "participant_id", "kind", "submitted_at"),
                      *_checkin_kind_and_source())

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    kind: Mapped[str] = mapped_column(String(16))  # CheckinKind
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    local_date: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # CheckinSource
    itch: Mapped[int | None] = mapped_column(Integer)  # worst itch, last 24 h, 0-10
    pain: Mapped[int | None] = mapped_column(Integer)  # worst skin pain, last 24 h, 0-10
    reaction: Mapped[str | None] = mapped_column(String(16))  # none | redness | burning | itching | acne | other
    reaction_severity: Mapped[str | None] = mapped_column(String(16))  # mild | moderate | severe
    new_problem: Mapped[str | None] = mapped_column(Text)  # the participant's words, optional
    medicines: Mapped[str | None] = mapped_column(String(16))  # no | medicines | other_cream | both
    medicines_change: Mapped[str | None] = mapped_column(Text)  # what changed, in their words
    red_flags: Mapped[list[str] | None] = mapped_column(JSON)  # codes from study.toml [safety] red_flags


class DraftState(StrEnum):
    """Whether a check-in in progress is asking its question now, or set aside by the participant
    ("Finish later"): only a draft that is asking takes what they type as an answer."""

    ASKING = "asking"
    LATER = "later"


class CheckinDraft(Base):
    """A check-in in progress: one per participant, its answers so far and the question it is
    on. Survives restarts, so an interrupted check-in resumes where it stopped; expires at
    `expires_at` (then kept in `incomplete_checkins`, never half-saved as a check-in)."""

    __tablename__ = "checkin_drafts"
    __table_args__ = (CheckConstraint(_in("state", DraftState), name="state"), *_checkin_kind_and_source())

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))
    answers: Mapped[JSONObject] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(8), default=DraftState.ASKING)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class IncompleteCheckin(Base):
    """A check-in that was started and never saved: expired at the end of its day, or started
    again from the beginning. Its answers are kept as they were, for the record; it is not a
    check-in (nothing in it was confirmed by the participant). Append-only."""

    __tablename__ = "incomplete_checkins"
    __table_args__ = (CheckConstraint(_in("reason", CheckinEnding), name="reason"), *_checkin_kind_and_source())

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))  # the question it stopped at
    answers: Mapped[JSONObject] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    local_date: Mapped[date] = mapped_column(Date)  # the participant's day it was started
    timezone: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class AlertSource(StrEnum):
    """What raised an alert."""

    CHECKIN = "checkin"  # a check-in's answers
    URGENT = "urgent"  # /urgent
    MESSAGE = "message"  # a participant's words, screened
    PREGNANCY_TEST = "pregnancy_test"  # a positive test


class Alert(Base):
    """A possible safety signal for the study team: raised with its report, sent to every
    on-duty staff member at once, re-sent until acknowledged, escalated to the investigator."""

    __tablename__ = "alerts"
    __table_args__ = (CheckConstraint(_in("status", AlertStatus), name="status"),
                      CheckConstraint(_in("source", AlertSource), name="source"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # AlertSource
    triggers: Mapped[list[JSONObject]] = mapped_column(JSON)  # what was reported, as codes and scores
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.OPEN, index=True)  # AlertStatus
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("participant_messages.id"))


class MessageKind(StrEnum):
    """What a participant sent: words, or media the study team receives as it is."""

    TEXT = "text"
    PHOTO = "photo"
    DOCUMENT = "document"
    VOICE = "voice"
    AUDIO = "audio"
    VIDEO = "video"
    VIDEO_NOTE = "video_note"
    ANIMATION = "animation"


class Direction(StrEnum):
    """Which way a participant message went."""

    IN = "in"  # from the participant
    OUT = "out"  # a reply from the study team


class ParticipantMessage(Base):
    """What a participant told the study team (text, or media with its caption in `text`) and
    the team's replies. Append-only. The text is stored with control characters removed;
    `original_length` is its length as received."""

    __tablename__ = "participant_messages"
    __table_args__ = (CheckConstraint(_in("kind", MessageKind), name="kind"),
                      CheckConstraint(_in("direction", Direction), name="direction"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # Direction
    text: Mapped[str] = mapped_column(Text)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default=MessageKind.TEXT)
    original_length: Mapped[int | None] = mapped_column(Integer)
    # Where it was typed: "free" (no question pending), or "checkin:<step>" (while a check-in
    # asked that question, and it was not an answer to it).
    context: Mapped[str | None] = mapped_column(String(32))
    # What the red-flag screening found: {"flags": [...], "negated": [...]}.
    screening: Mapped[JSONObject | None] = mapped_column(JSON)
    # The participant's own Telegram message (media is copied from it to the study team).
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)


class ProcessedUpdate(Base):
    """An update from Telegram that was handled: Telegram delivers at least once (a webhook
    retried, polling after a crash, a second process), so each update's effects are written in
    the same transaction as this row, and a second delivery finds it and repeats `answer`
    instead of the effects. `action_key` does the same for a button that acts once per message
    (a second tap on Save before the first tap's edit arrived). Kept for a week: Telegram
    redelivers an update for a day at most, and picks update ids anew after a week of silence."""

    __tablename__ = "processed_updates"
    __table_args__ = (UniqueConstraint("bot_id", "update_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[int] = mapped_column(BigInteger)
    update_id: Mapped[int] = mapped_column(BigInteger)
    callback_query_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    action_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    handled_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The reply the update got (template, language, text, buttons, hash), to give again.
    answer: Mapped[JSONObject | None] = mapped_column(JSON)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BroadcastStatus(StrEnum):
    """Where a broadcast is: draft -> awaiting_approval (a second staff member must approve) ->
    sending -> done; a draft can be cancelled, a broadcast awaiting approval withdrawn (by its
    author or the investigator) or expired (not approved in time: study/broadcasts.py)."""

    DRAFT = "draft"
    AWAITING_APPROVAL = "awaiting_approval"
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class Broadcast(Base):
    """A notice to many participants, from its draft to its final report. Current state changed
    in place (every change audited): see BroadcastStatus. `confirmed_at`: when its author
    confirmed it (a second approval is asked for from then); `approved_at`: the second approval.
    `template_hashes` are the approved SHA-256 of the template in each language at confirmation;
    `recipients` the study ids it was queued for (one outbox row each, key broadcast:<id>:<pid>)."""

    __tablename__ = "broadcasts"
    __table_args__ = (CheckConstraint(_sql_in("status", tuple(BroadcastStatus)), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    approver_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    template_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)  # the author's own words, for templates that wrap them
    audience: Mapped[str] = mapped_column(String(32))  # all | wocbp | participant:P001 | visits:7
    status: Mapped[str] = mapped_column(String(24), default="draft", index=True)
    template_hashes: Mapped[dict[str, str] | None] = mapped_column(JSON)
    recipients: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The one status message edited in place with progress, in the author's chat.
    status_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress: Mapped[str | None] = mapped_column(String(64))  # the counts last shown


class CorrectedEntity(StrEnum):
    """Which kind of record a correction is about."""

    DIARY_ENTRY = "diary_entry"
    CHECKIN = "checkin"


class CorrectedField(StrEnum):
    """What a correction may change: each is the column of the record it corrects (`withdrawn`:
    the study team says the entry did not happen, or takes that back)."""

    KIND = "kind"
    OCCURRED_AT = "occurred_at"
    LOCAL_DATE = "local_date"
    MISSED_REASON = "missed_reason"
    WITHDRAWN = "withdrawn"
    ITCH = "itch"
    PAIN = "pain"
    REACTION = "reaction"
    REACTION_SEVERITY = "reaction_severity"
    NEW_PROBLEM = "new_problem"
    MEDICINES = "medicines"
    MEDICINES_CHANGE = "medicines_change"


DIARY_FIELDS = (CorrectedField.KIND, CorrectedField.OCCURRED_AT, CorrectedField.LOCAL_DATE,
                CorrectedField.MISSED_REASON, CorrectedField.WITHDRAWN)
CHECKIN_FIELDS = (CorrectedField.ITCH, CorrectedField.PAIN, CorrectedField.REACTION,
                  CorrectedField.REACTION_SEVERITY, CorrectedField.NEW_PROBLEM, CorrectedField.MEDICINES,
                  CorrectedField.MEDICINES_CHANGE)


# The correction names exactly one record, of its entity, and a field that record has.
CORRECTION_TARGET = (
    f"(entity = 'diary_entry' AND diary_entry_id IS NOT NULL AND checkin_id IS NULL AND "
    f"{_sql_in('field', DIARY_FIELDS)}) OR "
    f"(entity = 'checkin' AND checkin_id IS NOT NULL AND diary_entry_id IS NULL AND "
    f"{_sql_in('field', CHECKIN_FIELDS)})"
)


class Correction(Base):
    """A correction by the study team of one field of a diary entry or a check-in: the value
    before and after, why, who and when. Append-only: the record it corrects stays as it was
    recorded, and a later correction of the same field supersedes an earlier one (study/corrections.py)."""

    __tablename__ = "corrections"
    __table_args__ = (
        CheckConstraint(_sql_in("entity", tuple(CorrectedEntity)), name="entity"),
        CheckConstraint(CORRECTION_TARGET, name="target"),
        CheckConstraint("reason <> ''", name="reason"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    entity: Mapped[str] = mapped_column(String(16))
    diary_entry_id: Mapped[int | None] = mapped_column(ForeignKey("diary_entries.id"), index=True)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"), index=True)
    field: Mapped[str] = mapped_column(String(24))
    old_value: Mapped[Any] = mapped_column(JSON)  # JSON: numbers, text, ISO dates and instants, true/false, null
    new_value: Mapped[Any] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    corrected_by: Mapped[str] = mapped_column(String(64))  # actor, e.g. staff:3 or operator:dana
    corrected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))  # the participant's zone when corrected


class Supersession(Base):
    """A participant's own entry (a dose recorded afterwards, or said missed) that stands for a dose
    slot the system had recorded as `missing`: both diary entries are kept as they are; while the
    participant's entry stands, the missing record does not count. Append-only."""

    __tablename__ = "supersessions"
    __table_args__ = (CheckConstraint("superseded_id <> by_entry_id", name="distinct"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    superseded_id: Mapped[int] = mapped_column(ForeignKey("diary_entries.id"), index=True)  # the missing record
    by_entry_id: Mapped[int] = mapped_column(ForeignKey("diary_entries.id"), unique=True)  # the participant's
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))


class RequestAction(StrEnum):
    """What a staff member asked for in Telegram, held until they confirm it (study/staff_requests.py)."""

    PLAN_VISITS = "plan_visits"  # the protocol's visits, from a baseline date
    MOVE_VISIT = "move_visit"
    CANCEL_VISIT = "cancel_visit"
    VISIT_DONE = "visit_done"
    PAUSE = "pause"  # the bot's messages to the participant, as their own /stop
    END = "end"  # withdrawn or completed
    TIMEZONE = "timezone"


class RequestState(StrEnum):
    """Where a staff request stands. Asking and confirming are open (until `expires_at`); the
    rest are final."""

    ASKING = "asking"  # the bot asked for something (`step`): the member's next words or button answer it
    CONFIRMING = "confirming"  # all given, shown back with Confirm and Cancel
    CONFIRMED = "confirmed"  # done
    CANCELLED = "cancelled"
    REFUSED = "refused"  # could not be done when confirmed (the member was told why)
    SUPERSEDED = "superseded"  # the member started another request before finishing this one
    EXPIRED = "expired"  # left open past `expires_at`


class RequestStep(StrEnum):
    """What an asking request waits for."""

    VISIT = "visit"  # which visit (buttons)
    BASELINE = "baseline"  # the baseline date of a visit plan (typed)
    DATE = "date"  # a visit's new date, and time if agreed (typed)
    REASON = "reason"  # why (typed)


class StaffRequest(Base):
    """A change a staff member asked for in Telegram (/visits P001's buttons, /pause, /end,
    /timezone), from the first question to Confirm or Cancel. Current state, changed in place;
    every change is audited (entity "staff_request"). What it does when confirmed is the same
    domain call the command line makes, audited as usual."""

    __tablename__ = "staff_requests"
    __table_args__ = (CheckConstraint(_in("action", RequestAction), name="action"),
                      CheckConstraint(_in("state", RequestState), name="state"),
                      CheckConstraint(f"step IS NULL OR {_in('step', RequestStep)}", name="step"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(12))
    step: Mapped[str | None] = mapped_column(String(12))
    visit_id: Mapped[int | None] = mapped_column(ForeignKey("visits.id"))
    # What was given so far: baseline, date, time, reason, status, timezone (JSON: ISO strings).
    details: Mapped[JSONObject] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SendSlot(Base):
    """The bot's last sends, one row per slot of its overall limit (bot/send_limiter.py): a send
    takes the slot least recently taken, and only once that was a second (and a margin) ago, so
    every process of the bot together stays inside Telegram's limit. On PostgreSQL only; a SQLite
    deployment is one process and keeps the ring in memory. `taken_at`: the database's clock, in
    seconds since the epoch."""

    __tablename__ = "send_slots"

    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    taken_at: Mapped[float] = mapped_column(Float)


class SendChat(Base):
    """Each chat's recent sends, as every process of the bot sees them (bot/send_slots.py), kept
    by a bucket of chats (a hash of the chat's id, never the id: nothing about a stranger is stored):
    Telegram paces one chat (a burst, then about one message a second) over all the bot's
    processes, so a chat's pace is kept beside the overall slots. `tokens`: the chat's burst left
    at `at`, refilled at one per `every` seconds; `newest`: its last send (bulk messages keep a
    second from it). Times: the database's clock, in seconds since the epoch. On PostgreSQL only."""

    __tablename__ = "send_chats"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    newest: Mapped[float] = mapped_column(Float)


class SendReplies(Base):
    """Until when a reply is waiting for a send slot in some process of the bot (bot/send_slots.py):
    no process's bulk message takes a slot before then. One row. On PostgreSQL only."""

    __tablename__ = "send_replies"
    __table_args__ = (CheckConstraint("id = 0", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    waiting_until: Mapped[float] = mapped_column(Float)
