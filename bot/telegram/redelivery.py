"""Handle an update again after a transient failure: polling's stand-in for Telegram's webhook redelivery.

Why: in webhook mode an update whose handling failed for a transient reason (the database, the network,
a lock wait) is answered 503 and Telegram delivers it again. A polled update is confirmed to Telegram
when the next batch is fetched, so the same failure would lose it: under overload (500 pastes/s on two
cores) the database pool timed out for a few updates, and those customers' keys were deleted and never
checked. Here such an update goes back into the application's queue after a pause, a few times at most.
Handling it twice is safe for the same reason Telegram's redelivery is: the update's claim is committed
with the conversation's state, so one that got that far is skipped the second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

from telegram import Update
from telegram.error import BadRequest, NetworkError, RetryAfter

from storage.db import is_transient_database_error

__all__ = ["PAUSES_S", "Redelivery", "is_transient"]

log = logging.getLogger(__name__)

PAUSES_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # before each new try; then the failure is logged as final
MAX_TRACKED = 10_000


def is_transient(error: BaseException) -> bool:
    """Worth a redelivery: the database, the network or a lock wait failed, not our logic."""
    if isinstance(error, BadRequest):  # PTB derives it from NetworkError, but Telegram refused our request
        return False
    return is_transient_database_error(error) or isinstance(error, NetworkError | RetryAfter | OSError)


class Redelivery:
    """Put an update that failed transiently back into ``queue`` after a growing pause."""

    def __init__(self, queue: asyncio.Queue[object], pauses: Sequence[float] = PAUSES_S, *,
                 running: Callable[[], bool] = lambda: True) -> None:
        self.queue = queue
        self.pauses = tuple(pauses)
        self.running = running  # False once the application stops: nobody would take the update any more
        self._tries: OrderedDict[int, int] = OrderedDict()  # update id -> redeliveries so far
        self._scheduled: set[int] = set()  # put back soon: a second failing handler of the same pass waits

    def again(self, update: Update, error: BaseException) -> bool:
        """Schedule ``update`` once more if ``error`` is transient and tries are left; say whether it was."""
        if not is_transient(error):
            return False
        if update.update_id in self._scheduled:
            return True  # another handler of the same pass failed too: one redelivery is enough
        done = self._tries.pop(update.update_id, 0)
        if done >= len(self.pauses):
            return False
        self._tries[update.update_id] = done + 1
        while len(self._tries) > MAX_TRACKED:
            self._tries.popitem(last=False)
        pause = self.pauses[done]
        log.warning("update %s failed transiently (%s); handling it again in %.1f s (try %d of %d)",
                    update.update_id, type(error).__name__, pause, done + 2, len(self.pauses) + 1)
        self._scheduled.add(update.update_id)
        asyncio.get_running_loop().call_later(pause, self._put_back, update)
        return True

    def _put_back(self, update: Update) -> None:
        self._scheduled.discard(update.update_id)
        if not self.running():  # stopping: the queue is drained and joined, a late update would hang it
            log.warning("update %s not handled again: the bot is stopping", update.update_id)
            return
        self.queue.put_nowait(update)
