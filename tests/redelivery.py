"""Delivering an update again, as Telegram does when it is not sure the bot took it, and
waiting until the bot has handled it once more (the bot logs each update it has handled)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from tests.trial import Trial
from tests.waiting import until

HANDLED = "update %s handled"


class HandledUpdates(logging.Handler):
    """Counts, per update id, how many times the bot finished handling it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[int, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == HANDLED and record.args:
            update_id = record.args[0]  # type: ignore[index]
            self.counts[update_id] = self.counts.get(update_id, 0) + 1

    def times(self, update_id: int) -> int:
        return self.counts.get(update_id, 0)


@contextlib.contextmanager
def watching() -> Iterator[HandledUpdates]:
    """Watch the bot's 'update N handled' lines (bot/exactly_once.py) while the block runs."""
    watcher = HandledUpdates()
    logger = logging.getLogger("bot.exactly_once")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(level)


def last_update_id(trial: Trial) -> int:
    return trial.world.delivered_update_ids[-1]


async def deliver_again(trial: Trial, handled: HandledUpdates, update_id: int) -> None:
    """Deliver `update_id` once more (after its first delivery was handled) and wait until the
    bot has handled it again."""
    await until(lambda: handled.times(update_id) >= 1)
    before = handled.times(update_id)
    trial.world.deliver_again(update_id)
    await until(lambda: handled.times(update_id) > before)
