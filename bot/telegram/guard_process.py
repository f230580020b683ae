"""The guard lane in a process of its own (``GUARD_LANE=process``): deletions never wait for the GIL.

Why: the thread lane (bot/telegram/guard_lane.py) escapes the main loop's backlog but not the interpreter.
At a few hundred pastes per second the main loop keeps a core busy with verifications, and the lane
thread waits for the GIL; the bot-side share of the exposure window grew as large as the customer's. Here
the very same lane (:meth:`GuardLane.serve`: the ``getUpdates`` long poll, the secret guard, deletion
with its deadlines, :class:`~bot.telegram.guard_lane.Confirmations`) runs in a spawned child process
with its own interpreter, and each update comes back through a pipe: the raw update JSON (the only place
a pasted key travels, in memory, never logged) and the verdict. A deletion still PENDING at its deadline
is answered later by a ``settled`` message, which resolves a Future made on this side.

The child stops when told to, on SIGTERM, or when the pipe reaches EOF (the parent died, even by
SIGKILL), each time letting deletions under way finish (bounded, as the thread lane does). The parent
notices a child that died (EOF without a goodbye) and stops the bot with that as the reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from bot.core.ports import DeleteOutcome, GuardVerdict
from bot.telegram.guard_lane import SWITCH_INTERVAL_S, UNCHECKED, GuardLane, Handover

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.web.guard_intake import IntakeConfig

__all__ = ["GuardProcess", "LaneConfig", "build_lane"]

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0  # beyond the lane's own 30 s bound for deletions under way, before the child is killed
PARENT_CHECK_S = 1.0  # how often the child looks whether its parent is still there (besides the pipe's EOF)


@dataclass(frozen=True)
class LaneConfig:
    """What the child needs to run the lane (pickled to it by ``spawn`` over a pipe, never on a command line)."""

    token: str
    base_url: str
    allowed_updates: list[str]
    delete_deadline_s: float
    delete_notice_after_s: float
    delete_background_s: float = 600.0
    log_level: str = "INFO"
    redact: list[str] = field(default_factory=list)
    intake: IntakeConfig | None = None  # set: the lane takes webhook POSTs instead of polling getUpdates


class GuardProcess:
    """The parent's side: starts the child, reads its messages, hands updates over like :class:`GuardLane`."""

    def __init__(self, config: LaneConfig, handover: Handover, outcome: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.handover = handover
        self.outcome = outcome or (lambda _: None)  # the webhook intake's refusals, for /metrics
        self.failure: BaseException | None = None
        self.stopped = threading.Event()
        self._ready = threading.Event()
        self._settling: dict[int, concurrent.futures.Future[DeleteOutcome]] = {}  # update id → PENDING's end
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copied loop, locks or sockets
        self._conn, child_end = context.Pipe(duplex=True)
        self._process = context.Process(target=child_main, args=(config, child_end), name="guard-lane",
                                         daemon=True)
        self._child_end: Connection | None = child_end
        self._reader = threading.Thread(target=self._read, name="guard-lane-reader", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        if self._child_end is not None:  # only the child holds it now: its death is our EOF
            self._child_end.close()
            self._child_end = None
        self._reader.start()
        self._ready.wait(60)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; deletions under way finish in the child (bounded), then it exits."""
        if self._process.pid is None:
            return  # never started (the bot stopped before the lane did)
        with contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(b'{"t":"stop"}')
        self._process.join(timeout + STOP_GRACE_S)
        if self._process.is_alive():
            log.warning("the guard process did not stop in time; killing it")
            self._process.kill()
            self._process.join(5)
        self._reader.join(5)

    def report_waiting(self, waiting: int, received: int) -> None:
        """Tell the webhook intake how many updates wait here and how many came from it (it answers 503
        above WEBHOOK_QUEUE_MAX)."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(_dump({"t": "w", "n": waiting, "r": received}))

    def _read(self) -> None:
        goodbye = False
        try:
            while True:
                message = json.loads(self._conn.recv_bytes())
                kind = message["t"]
                if kind == "u":
                    self.handover(message["raw"], self._verdict(message))
                elif kind == "s":
                    settled = self._settling.pop(int(message["u"]), None)
                    if settled is not None and not settled.done():
                        settled.set_result(DeleteOutcome(message["o"]))
                elif kind == "m":
                    self.outcome(str(message["o"]))
                elif kind == "ready":
                    self._ready.set()
                elif kind == "failed":
                    self.failure = _failure(message)
                elif kind == "bye":
                    goodbye = True
        except (EOFError, OSError):
            pass
        except Exception as exc:  # a message we cannot read: stop the bot rather than lose updates quietly
            self.failure = RuntimeError(f"unreadable message from the guard process ({type(exc).__name__})")
        finally:
            if self.failure is None and not goodbye:
                self._process.join(5)
                self.failure = RuntimeError(f"the guard process died (exit code {self._process.exitcode}); "
                                            "no updates are received, so the bot stops")
            for settled in self._settling.values():  # whoever waits hears it was not deleted
                if not settled.done():
                    settled.set_result(DeleteOutcome.FAILED)
            self._settling.clear()
            with contextlib.suppress(OSError):
                self._conn.close()
            self._ready.set()
            self.stopped.set()

    def _verdict(self, message: dict[str, Any]) -> GuardVerdict | None:
        fields = message.get("v")
        if fields is None:
            return None
        if fields == "unchecked":
            return UNCHECKED
        settled: concurrent.futures.Future[DeleteOutcome] | None = None
        if fields["p"]:
            settled = concurrent.futures.Future()
            self._settling[int(message["raw"]["update_id"])] = settled
        return GuardVerdict(DeleteOutcome(fields["d"]), float(fields["r"]), float(fields["x"]), settled)


def _failure(message: dict[str, Any]) -> BaseException:
    if message.get("kind") == "invalid_token":
        from telegram.error import InvalidToken

        return InvalidToken()  # main.py turns it into the usual "Telegram rejected TELEGRAM_BOT_TOKEN"
    return RuntimeError(f"the guard process stopped: {message.get('error', 'unknown error')}")


# -- the child -----------------------------------------------------------------------------------------

def child_main(config: LaneConfig, conn: Connection) -> None:
    """Run the lane until told to stop, SIGTERM, or the parent's end of the pipe is gone."""
    from telegram.error import InvalidToken

    from bot.logs import configure_logging

    configure_logging(config.log_level, config.redact)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent too; it tells us to stop
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    lane = build_lane(config, _handover_to(outbox), lambda outcome: outbox.put(_dump({"t": "m", "o": outcome})))
    signal.signal(signal.SIGTERM, lambda *_: lane.cancel())
    writer = threading.Thread(target=_write, args=(conn, outbox), name="guard-lane-writer", daemon=True)
    writer.start()
    threading.Thread(target=_watch_parent, args=(conn, lane), name="guard-lane-watch", daemon=True).start()
    announce = threading.Thread(target=_announce_ready, args=(lane, outbox), daemon=True)
    announce.start()
    try:
        asyncio.run(lane.serve())
    except InvalidToken:
        outbox.put(_dump({"t": "failed", "kind": "invalid_token"}))
    except BaseException as exc:  # the type only: an exception's text could quote a request
        outbox.put(_dump({"t": "failed", "error": type(exc).__name__}))
    else:
        outbox.put(_dump({"t": "bye"}))
    finally:
        outbox.put(None)
        writer.join(10)


def build_lane(config: LaneConfig, handover: Handover, outcome: Callable[[str], None] | None = None) -> GuardLane:
    """The lane the config asks for, wherever it runs (a thread of the bot, or the child here): polling
    ``getUpdates``, or taking webhook POSTs."""
    deadlines = {"delete_deadline_s": config.delete_deadline_s, "delete_notice_after_s": config.delete_notice_after_s,
                 "delete_background_s": config.delete_background_s}
    if config.intake is None:
        return GuardLane(config.token, config.base_url, config.allowed_updates, handover, **deadlines)
    from bot.web.guard_intake import WebhookIntake

    return WebhookIntake(config.token, config.base_url, config.intake, handover, outcome=outcome, **deadlines)


def _handover_to(outbox: queue.SimpleQueue[bytes | None]) -> Handover:
    """The lane's handover in the child: queue the message; the writer thread sends it (the lane never
    blocks on a full pipe, whatever the parent is busy with)."""
    def handover(raw: dict[str, Any], verdict: GuardVerdict | None) -> None:
        fields: dict[str, Any] | str | None = None
        if verdict is UNCHECKED:
            fields = "unchecked"
        elif verdict is not None:
            fields = {"d": verdict.deletion.value, "r": verdict.received_at, "x": verdict.deleted_at,
                      "p": verdict.settled is not None}
        outbox.put(_dump({"t": "u", "raw": raw, "v": fields}))
        if verdict is not None and verdict.settled is not None:
            # After the update: a deletion that already settled would otherwise be announced first, and
            # the parent would drop the outcome of an update it had not seen yet.
            update_id = int(raw["update_id"])
            verdict.settled.add_done_callback(
                lambda done: outbox.put(_dump({"t": "s", "u": update_id, "o": _outcome(done).value})))

    return handover


def _outcome(done: concurrent.futures.Future[DeleteOutcome]) -> DeleteOutcome:
    if done.cancelled() or done.exception() is not None:
        return DeleteOutcome.FAILED
    return done.result()


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _write(conn: Connection, outbox: queue.SimpleQueue[bytes | None]) -> None:
    while (message := outbox.get()) is not None:
        try:
            conn.send_bytes(message)
        except OSError:  # the parent is gone: nothing to hand over to; deletions still finish
            continue


def _watch_parent(conn: Connection, lane: GuardLane) -> None:
    """Stop the lane when told to, or when the parent is gone (EOF, or a new parent: it died)."""
    parent = os.getppid()
    while True:
        try:
            if conn.poll(PARENT_CHECK_S):
                message = json.loads(conn.recv_bytes())
                if message.get("t") == "stop":
                    break
                if message.get("t") == "w":
                    lane.report_waiting(int(message["n"]), int(message["r"]))
            elif os.getppid() != parent:
                break
        except (EOFError, OSError):
            break
    lane.cancel()


def _announce_ready(lane: GuardLane, outbox: queue.SimpleQueue[bytes | None]) -> None:
    if lane.ready.wait(60):
        outbox.put(_dump({"t": "ready"}))
