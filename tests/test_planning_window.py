"""The tick loads only the diary entries the planners can look at (scheduler/planner.py
`diary_window`), so a wave costs the same after a year of entries as after a day. These tests hold
it to that: for any history, in any zone, with entries recorded in any zone (a participant who
moved), at any moment of the year (the clocks' changes included), the planners given only the
entries of the window (applications and missing records from the start of the participant's
yesterday, missed doses from its day on; or a batch's wider window, with other zones) plan
exactly what they plan given the whole history; and a window any tighter does not. And the
database answers that question from the index, not by reading each participant's diary."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, text

from scheduler import tick as tick_module
from scheduler.planner import DiaryFact, ParticipantView, diary_window, plan_applications, planned_from, slot_plan
from scheduler.tick import Records, Tick, plan_participant
from study import diary
from study.clock import ManualClock
from study.models import Participant
from study.protocol import EXAMPLE_PROTOCOL, load_protocol
from tests.databases import migrated

PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)
# The ends of the world's offsets (UTC-12, UTC+14), odd ones (+05:45, +12:45 with daylight saving,
# -03:30), half-hour daylight saving (Lord Howe), and the usual ones with their clock changes.
ZONES = ["Etc/GMT+12", "Pacific/Kiritimati", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns",
         "Australia/Lord_Howe", "America/New_York", "Europe/London", "Australia/Sydney", "UTC"]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

zones = st.sampled_from(ZONES)
minutes_of_year = st.integers(min_value=0, max_value=365 * 24 * 60)
reminder_times = st.lists(st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])),
                          min_size=0, max_size=4, unique=True).map(
    lambda pairs: tuple(sorted(time(h, m) for h, m in pairs)))


@st.composite
def entries(draw, now: datetime, zone: str) -> DiaryFact:
    """One entry as the diary writes them: an application or a system "missing" record at an
    instant (its day: that instant's day in the zone the participant was in when it was recorded);
    a "missed a dose" for a day. From 40 days before `now` to a day after (a clock put right), and
    often within hours of the edge of what is planned: the start of the participant's yesterday."""
    kind = draw(st.sampled_from(["applied", "applied", "missing", "missed"]))
    recorded_in = ZoneInfo(draw(zones))
    yesterday = now.astimezone(ZoneInfo(zone)).date() - timedelta(days=1)
    edge = datetime.combine(yesterday, time(0), ZoneInfo(zone)).astimezone(UTC)
    at = draw(st.one_of(
        st.integers(min_value=-40 * 24 * 60, max_value=24 * 60).map(lambda m: now + timedelta(minutes=m)),
        st.integers(min_value=-6 * 60, max_value=6 * 60).map(lambda m: edge + timedelta(minutes=m)),
    ))
    if kind == "missed":
        return DiaryFact("missed", at.astimezone(recorded_in).date(), draw(st.sampled_from([None, at])))
    return DiaryFact(kind, at.astimezone(recorded_in).date(), at)


@st.composite
def situations(draw) -> tuple[ParticipantView, list[DiaryFact], datetime]:
    now = YEAR_START + timedelta(minutes=draw(minutes_of_year))
    joined = now - timedelta(minutes=draw(st.integers(min_value=0, max_value=400 * 24 * 60)))
    resumed = draw(st.sampled_from([None, now - timedelta(hours=draw(st.integers(0, 72)))]))
    person = ParticipantView(id=7, study_id="P007", timezone=draw(zones), reminder_times=draw(reminder_times),
                             active_since=joined, treatment_since=resumed)
    history = draw(st.lists(entries(now, person.timezone), max_size=60))
    return person, history, now


def windowed(history: list[DiaryFact], since: date, since_at: datetime) -> list[DiaryFact]:
    """What the tick reads of a history (study/diary.py `planning_facts`' query): from the day
    `since` on, the missed doses, and the rest from the instant `since_at` on."""
    return [fact for fact in history if fact.local_date >= since
            and (fact.kind == "missed" or (fact.occurred_at is not None and fact.occurred_at >= since_at))]


@PROPERTY
@given(situations(), zones)
def test_the_planners_plan_the_same_from_the_window_as_from_the_whole_history(situation, other_zone) -> None:
    person, history, now = situation
    whole = plan_participant(PROTOCOL, person, Records(diary=history), now)
    # The participant's own window, and a batch's: the widest of its zones'.
    for zones_of_batch in ([person.timezone], [person.timezone, other_zone]):
        since, since_at = diary_window(now, zones_of_batch)
        assert plan_participant(PROTOCOL, person, Records(diary=windowed(history, since, since_at)), now) == whole


@PROPERTY
@given(situations(), st.integers(min_value=1, max_value=600), st.integers(min_value=1, max_value=600))
def test_the_same_whatever_the_reminder_rules(situation, nudge_after: int, stale_after: int) -> None:
    person, history, now = situation
    rules = PROTOCOL.reminders.model_copy(update={"nudge_after_minutes": nudge_after,
                                                  "stale_after_minutes": stale_after})
    protocol = PROTOCOL.model_copy(update={"reminders": rules})
    since, since_at = diary_window(now, [person.timezone])
    assert plan_applications(protocol, person, windowed(history, since, since_at), now) == \
        plan_applications(protocol, person, history, now)


def test_a_window_any_tighter_plans_differently() -> None:
    """The window is no wider than it must be, and the property above can fail: an application
    at the very start of the participant's yesterday (the first slot's window opens at local
    midnight), and one recorded there in the westmost zone (whose local day is `since`), each
    hold yesterday's first slot; a window a minute later, or a day later, loses it and plans the
    slot missing."""
    now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    times = (time(8), time(20))
    for zone, recorded_in in (("America/New_York", "America/New_York"), ("Pacific/Kiritimati", "Etc/GMT+12"),
                              ("Asia/Kathmandu", "Etc/GMT+12")):
        person = ParticipantView(id=7, study_id="P007", timezone=zone, reminder_times=times,
                                 active_since=now - timedelta(days=30))
        since, since_at = diary_window(now, [zone])
        history = [DiaryFact("applied", since_at.astimezone(ZoneInfo(recorded_in)).date(), since_at)]
        whole = plan_participant(PROTOCOL, person, Records(diary=history), now)
        assert plan_participant(PROTOCOL, person, Records(diary=windowed(history, since, since_at)), now) == whole
        tighter = [windowed(history, since, since_at + timedelta(minutes=1))]
        if recorded_in == "Etc/GMT+12":
            assert history[0].local_date == since
            tighter.append(windowed(history, since + timedelta(days=1), since_at))
        for facts in tighter:
            assert plan_participant(PROTOCOL, person, Records(diary=facts), now) != whole, (zone, facts)


def test_the_window_is_a_day_or_two_whatever_the_moment() -> None:
    """The start of the participant's yesterday: a day or two back (an hour more or less across a
    change of the clocks), so about a day and a half of entries is read, not the diary."""
    # A November day, and the days of the clocks' changes in Europe, North America and Australia.
    for day in (date(2026, 11, 24), date(2026, 3, 9), date(2026, 3, 30), date(2026, 4, 6), date(2026, 10, 5),
                date(2026, 10, 26), date(2026, 11, 2)):
        for minutes in range(0, 24 * 60, 7):
            now = datetime.combine(day, time(0), UTC) + timedelta(minutes=minutes)
            for zone in ZONES:
                since, since_at = diary_window(now, [zone])
                assert since_at == planned_from(now, zone)
                assert timedelta(hours=23) <= now - since_at <= timedelta(hours=49)
                assert since_at.astimezone(ZoneInfo(zone)).time() == time(0)
            since, since_at = diary_window(now, ZONES)
            assert since_at == min(planned_from(now, zone) for zone in ZONES)
            assert timedelta(hours=23) <= now - since_at <= timedelta(hours=49)
            assert day - timedelta(days=3) <= since <= day - timedelta(days=1)


def test_slot_plans_are_shared_by_everyone_with_the_same_zone_times_and_day() -> None:
    times = (time(8), time(20))
    first = slot_plan("America/New_York", times, date(2026, 11, 24))
    assert slot_plan("America/New_York", times, date(2026, 11, 24)) is first
    assert [s.key for s in first.slots] == ["202611230800", "202611232000", "202611240800", "202611242000",
                                            "202611250800", "202611252000"]
    assert slot_plan.cache_info().maxsize is not None, "bounded"


async def test_the_diary_is_read_by_participant_and_day_through_its_index(tmp_path) -> None:
    """SQLite's plan for the planner's diary query: the (participant, day) index on both columns,
    not each participant's whole diary. (PostgreSQL chooses by its statistics on the same index:
    bench/reminder_wave.py measures it with a year of entries.)"""
    async with migrated(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}") as db, db.read() as session:
        query = diary._planning_facts_query(session, [1, 2, 3], date(2026, 11, 21),
                                            datetime(2026, 11, 22, 5, tzinfo=UTC))
        compiled = query.compile(session.bind, compile_kwargs={"literal_binds": True})
        plan = (await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))).all()
    details = " | ".join(row[-1] for row in plan)
    assert "ix_diary_entries_participant_day (participant_id=? AND local_date>?)" in details, details


async def test_a_tick_that_gives_many_their_first_look_gathers_postgresqls_statistics(db, monkeypatch) -> None:
    """After a bulk enrolment the statistics say nobody has a next look; once the tick has given
    everyone one, they are gathered again at once (pg_class.reltuples is ANALYZE's, transactional),
    so the next ticks' due query uses its index. On SQLite nothing is run."""
    monkeypatch.setattr(tick_module, "ANALYZE_AFTER_FIRST_LOOKS", 3)
    joined = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    async with db.transaction() as session:
        await session.execute(insert(Participant), [
            {"study_id": f"B{n:03d}", "timezone": "America/New_York", "language": "en", "wocbp": False,
             "reminder_times": "08:00,20:00", "status": "active", "telegram_user_id": 500 + n,
             "telegram_chat_id": 500 + n, "enrolled_at": joined, "consented_at": joined, "active_since": joined}
            for n in range(4)])

    async def reltuples() -> float | None:
        if db.is_sqlite:
            return None
        async with db.read() as session:
            return (await session.execute(text(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass('participants')"))).scalar()

    before = await reltuples()
    report = await Tick(db, PROTOCOL, ManualClock(joined + timedelta(minutes=30))).run_once()
    assert report.first_looks == 4
    if not db.is_sqlite:
        assert before != 4 and await reltuples() == 4
