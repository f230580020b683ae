"""The onboarding state machine: ``advance(conversation, event, policy, now) -> Transition``.

Pure: no I/O, no clock reads, no key material kept. The runtime loads the conversation, calls
:func:`advance`, saves the new conversation (with a version check) and only then performs the effects.
Verdicts from OpenAI and DoubleTick come back as events into this same function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from flows import effects as fx
from flows import events as ev
from flows.outcomes import ConnectionOutcome, VerificationOutcome
from flows.problems import PROBLEMS
from flows.reminders import REMINDER_CALLBACK_STEP
from flows.state import Conversation
from flows.steps import GUIDE_ORDER, MANUAL_ORDER, PIPELINE_STEPS, SPECS, SkipContext, Step, is_skipped

__all__ = ["Policy", "Transition", "advance", "next_step", "paste_is_checked", "previous_step"]

WORKSPACE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{1,63}$")


@dataclass(frozen=True, slots=True)
class Policy:
    """Deployment facts the flow depends on, decided by configuration, not by the user."""

    auto_connect: bool = False  # DoubleTick connection is configured
    asks_workspace: bool = False  # open mode: users name their workspace themselves
    can_hold: bool = False  # the sealed retry outbox is available
    pipeline_timeout_s: float = 120.0  # a verifying/connecting step older than this was interrupted
    hold_timeout_s: float = 16 * 60.0  # a held key older than this is gone (the outbox expired it)
    requires_invitation: bool = False  # closed mode: keys only from users bound by an agent's link
    # Checks busy (issue 14): a queued key waits sealed in the outbox up to this long; 0: in the pipeline task.
    queue_hold_s: float = 0.0
    # A key waiting for its message's slow deletion (step ``deleting``) waits in memory at most this long
    # (the deletion deadline plus its background window); a conversation still there later lost its key
    # with a process.
    deleting_timeout_s: float = 720.0


@dataclass(frozen=True, slots=True)
class Transition:
    conversation: Conversation
    effects: tuple[fx.Effect, ...] = field(default_factory=tuple)


def _skip_context(conv: Conversation, policy: Policy) -> SkipContext:
    return SkipContext(choices=conv.choices, asks_workspace=policy.asks_workspace and not conv.workspace_id,
                       needs_invitation=_needs_invitation(conv, policy))


def _sequence_of(step: Step) -> Sequence[Step]:
    return MANUAL_ORDER if step in MANUAL_ORDER else GUIDE_ORDER


def next_step(conv: Conversation, policy: Policy) -> Step:
    """The step after the current one in its sequence, skipping steps that do not apply."""
    order = _sequence_of(conv.step)
    ctx = _skip_context(conv, policy)
    for candidate in order[order.index(conv.step) + 1 :]:
        if not is_skipped(candidate, ctx):
            return candidate
    return Step.CONNECTED if order is MANUAL_ORDER else Step.PASTE_KEY


def previous_step(conv: Conversation, policy: Policy) -> Step:
    """The step Back leads to; the first manual step leads back to pasting."""
    if conv.step not in GUIDE_ORDER and conv.step not in MANUAL_ORDER:
        return Step.PASTE_KEY
    order = _sequence_of(conv.step)
    ctx = _skip_context(conv, policy)
    for candidate in reversed(order[: order.index(conv.step)]):
        if not is_skipped(candidate, ctx):
            return candidate
    return Step.PASTE_KEY if order is MANUAL_ORDER else Step.WELCOME


def _go(conv: Conversation, step: Step, now: float, *, fresh: bool = False, notice: str | None = None,
        notice_params: dict[str, str] | None = None, **changes: object) -> Transition:
    moved = conv.with_(step=step, help_shown=False, step_entered_at=now if step != conv.step
                       else conv.step_entered_at, **changes)
    return Transition(moved, (fx.Render(fresh=fresh, notice=notice, notice_params=notice_params or {}),))


def _show(conv: Conversation, *, fresh: bool = True, notice: str | None = None,
          notice_params: dict[str, str] | None = None) -> Transition:
    return Transition(conv, (fx.Render(fresh=fresh, notice=notice, notice_params=notice_params or {}),))


def _problem(conv: Conversation, name: str, now: float, detail: str | None = None,
             *extra: fx.Effect, fresh: bool = False) -> Transition:
    moved = _go(conv, Step.KEY_PROBLEM, now, fresh=fresh, problem=name, problem_detail=detail)
    return Transition(moved.conversation, (*extra, *moved.effects))


# What the user does (as opposed to verdicts arriving): after a reminder, the first one means they came back.
USER_EVENTS = (ev.Started, ev.RestartAsked, ev.CancelAsked, ev.HelpAsked, ev.PrivacyAsked, ev.ReplaceAsked,
               ev.DisconnectAsked, ev.ButtonPressed, ev.KeyPasted, ev.TextSent, ev.MediaSent,
               ev.InvitationRedeemed)


def advance(conv: Conversation, event: ev.Event, policy: Policy, now: float) -> Transition:
    """Step the machine by one event. Unknown or ill-timed events never raise: they re-show the step."""
    transition = _advance(conv, event, policy, now)
    if not _came_back(conv, event):
        return transition
    after = transition.conversation
    after = after.with_(came_back=True) if after.reminded else after
    return Transition(after, (fx.Audit("came_back_after_reminder", {"step": conv.step.value}), *transition.effects))


def _came_back(conv: Conversation, event: ev.Event) -> bool:
    """The first thing the user does after the reminder (other than turning reminders off)."""
    if not conv.reminded or conv.came_back or isinstance(event, ev.StopRemindersAsked):
        return False
    if isinstance(event, ev.ButtonPressed) and event.step == REMINDER_CALLBACK_STEP:
        return event.action == "continue"
    return isinstance(event, USER_EVENTS)


def _advance(conv: Conversation, event: ev.Event, policy: Policy, now: float) -> Transition:
    match event:
        case ev.Started():
            return _on_start(conv, policy, now)
        case ev.RestartAsked():
            fresh_start = _keep_connection(conv, now)
            released: tuple[fx.Effect, ...] = (fx.ReleaseHeld(),) if conv.step == Step.HELD else ()
            return Transition(fresh_start, (*released, fx.Render(fresh=True, notice="restarted")))
        case ev.CancelAsked():
            return _on_cancel(conv, now)
        case ev.HelpAsked():
            return Transition(conv, (fx.Reply("help"), fx.Render(fresh=True)))
        case ev.PrivacyAsked():
            return Transition(conv, (fx.Reply("privacy"), fx.Render(fresh=True)))
        case ev.ReplaceAsked():
            return _on_replace(conv, now)
        case ev.DisconnectAsked():
            if not conv.connected:
                return _show(conv, notice="nothing_connected")
            return _go(conv, Step.CONFIRM_DISCONNECT, now, fresh=True, resume_step=conv.step)
        case ev.StopRemindersAsked():
            return Transition(conv.with_(reminders_off=True), (fx.Audit("reminders_stopped"),
                                                               fx.Reply("reminders_stopped")))
        case ev.ButtonPressed(step=step, action=action) if step == REMINDER_CALLBACK_STEP:
            if action == "stop":
                return _advance(conv, ev.StopRemindersAsked(), policy, now)
            return _show(conv, notice="welcome_back")  # Continue: the guide where they left off, at the bottom
        case ev.ButtonPressed(step=step, action=action):
            return _on_button(conv, step, action, policy, now)
        case ev.KeyPasted() if _needs_invitation(conv, policy):
            return _refuse_uninvited_paste(conv, event, now)
        case ev.KeyPasted():
            return _on_paste(conv, event, policy, now)
        case ev.InvitationRedeemed():
            return _on_invitation(conv, event, now)
        case ev.InvitationRefused():
            return _on_refusal(conv, event, policy, now)
        case ev.TextSent(text=text):
            return _on_text(conv, text, policy, now)
        case ev.MediaSent(kind=kind, deleted=deleted):
            notice = "media_at_paste" if conv.step == Step.PASTE_KEY else \
                "media_deleted" if deleted else "media_elsewhere"
            return _show(conv, notice=notice, notice_params={"kind": kind})
        case ev.DeletionFailed():
            return _on_deletion_failed(conv, event, now)
        case ev.DeletionPending():
            return _on_deletion_pending(conv, event, now)
        case ev.DeletionConfirmed(attempt=attempt, paste=paste):
            if conv.step != Step.DELETING or conv.attempt != attempt:
                return Transition(conv)  # the user moved on (a newer paste, /restart): the key is dropped unused
            return _advance(conv, paste, policy, now)
        case ev.VerificationFinished():
            return _on_verdict(conv, event, policy, now)
        case ev.ConnectionFinished():
            return _on_connection(conv, event, policy, now)
        case ev.HoldLost(attempt=attempt):
            if conv.step != Step.HELD or conv.attempt != attempt:
                return Transition(conv)  # the retry already ended (or the user moved on): nothing to say
            moved = _go(conv, Step.PASTE_KEY, now, fresh=True, notice="interrupted", check_at=None)
            return Transition(moved.conversation, (fx.Audit("hold_lost"), *moved.effects))
        case ev.DisconnectFinished(result=result):
            if result.outcome in (ConnectionOutcome.CONNECTED, ConnectionOutcome.DISCONNECTED,
                                  ConnectionOutcome.NOT_CONFIGURED):
                cleared = Conversation(workspace_id=conv.workspace_id, workspace_name=conv.workspace_name,
                                       bound_via=conv.bound_via, bound_at=conv.bound_at,
                                       attempt=conv.attempt, step_entered_at=now, reminded=conv.reminded,
                                       came_back=conv.came_back, reminders_off=conv.reminders_off)
                return Transition(cleared, (fx.Audit("disconnected"), fx.Reply("disconnected"),
                                            fx.Render(fresh=True)))
            back = conv.resume_step or Step.CONNECTED
            if result.outcome == ConnectionOutcome.FOREIGN_WORKSPACE:
                return _go(conv, back, now, notice="disconnect_foreign", resume_step=None)
            return _go(conv, back, now, notice="disconnect_failed")
        case ev.WorkspaceChangedElsewhere():
            return _on_changed_elsewhere(conv, event, now)
    return _show(conv)  # pragma: no cover - every event type is matched above


def _on_deletion_pending(conv: Conversation, event: ev.DeletionPending, now: float) -> Transition:
    """Telegram has not deleted the message yet but never said it can't: neither use the key nor call it
    exposed. It waits (in memory, see ``AwaitDeletion``) and is checked once the message is gone.

    While another key is being checked or held, or when nothing of the message can be used (a file), the
    step stays: the user hears that deleting is slow and that this message's content is not used.
    """
    if event.pasted is None or conv.step in PIPELINE_STEPS:
        return Transition(conv, (fx.Audit("deletion_slow", {"waits": "no"}), fx.AwaitDeletion(event.message_id, None),
                                 fx.Render(fresh=True, notice="still_deleting_unused")))
    attempt = conv.attempt + 1
    moved = conv.with_(step=Step.DELETING, attempt=attempt, problem=None, problem_detail=None, help_shown=False,
                       replacing=conv.replacing or conv.step == Step.CONNECTED, step_entered_at=now,
                       check_at=None)
    return Transition(moved, (fx.Audit("deletion_slow", {"waits": "yes"}), fx.AwaitDeletion(event.message_id, attempt),
                              fx.Render(fresh=True)))


def _on_deletion_failed(conv: Conversation, event: ev.DeletionFailed, now: float) -> Transition:
    """Telegram said the message can't be deleted (or never deleted it in the background window): the key
    is exposed. The paste that waits for it gets the usual answer; one the user left behind (a newer paste,
    /restart, a file) is told in a separate message, so a running check of another key is not cut off."""
    audit = fx.Audit("deletion_failed", {"reason": event.reason})
    if not event.late or (conv.step == Step.DELETING and conv.attempt == event.attempt):
        return _problem(conv, "deletion_failed", now, event.reason, audit, fresh=True)
    return Transition(conv, (audit, fx.Reply("deletion_failed_late")))


def _on_start(conv: Conversation, policy: Policy, now: float) -> Transition:
    if conv.step == Step.DELETING and now - conv.step_entered_at > policy.deleting_timeout_s:
        return _go(conv, Step.PASTE_KEY, now, fresh=True, notice="deleting_interrupted")
    timeout = policy.hold_timeout_s if conv.step == Step.HELD else policy.pipeline_timeout_s
    if conv.step in PIPELINE_STEPS and now - conv.pipeline_since > timeout:
        return _go(conv, Step.PASTE_KEY, now, fresh=True, notice="interrupted")
    if conv.step == Step.WELCOME:
        return _show(conv)
    return _show(conv, notice="welcome_back")


def _keep_connection(conv: Conversation, now: float) -> Conversation:
    """A fresh guide that still knows the workspace and the key live there (for /restart, /cancel)."""
    return Conversation(workspace_id=conv.workspace_id, workspace_name=conv.workspace_name,
                        bound_via=conv.bound_via, bound_at=conv.bound_at, connected=conv.connected,
                        key_last_four=conv.live_last_four,
                        key_family=conv.live_family, connected_last_four=conv.live_last_four,
                        connected_family=conv.live_family, attempt=conv.attempt, step_entered_at=now,
                        reminded=conv.reminded, came_back=conv.came_back, reminders_off=conv.reminders_off)


def _on_cancel(conv: Conversation, now: float) -> Transition:
    """Forget the progress. A connected workspace stays connected (cancelling a guide must not cut off
    DoubleTick's GPT features), so the bot keeps only that fact, says so, and /disconnect still works."""
    if not conv.connected:
        return Transition(Conversation(step_entered_at=now), (fx.Forget(), fx.Reply("cancelled")))
    kept = _keep_connection(conv, now).with_(step=Step.CONNECTED)
    params = {"last_four": conv.live_last_four or "????"}
    shred: tuple[fx.Effect, ...] = (fx.ReleaseHeld(),) if conv.step == Step.HELD else ()
    return Transition(kept, (*shred, fx.Audit("cancelled_while_connected"),
                             fx.Reply("cancelled_still_connected", params)))


def _revoke_reminder(conv: Conversation) -> tuple[str | None, dict[str, str]]:
    """After a new key goes live over a connected one (by /replace, or after /restart), name the old key."""
    old = conv.live_last_four
    if not old:
        return None, {}
    return "revoke_old_key", {"old_last_four": old}


def _went_live(conv: Conversation) -> Conversation:
    """The candidate is now the connected key."""
    return conv.with_(connected=True, replacing=False, connected_last_four=conv.key_last_four,
                      connected_family=conv.key_family)


def _on_replace(conv: Conversation, now: float) -> Transition:
    if not conv.connected:
        return _show(conv, notice="nothing_to_replace")
    return _go(conv, Step.PASTE_KEY, now, fresh=True, notice="replace_intro",
               notice_params={"last_four": conv.live_last_four or "????"}, replacing=True)


def _on_button(conv: Conversation, step: str, action: str, policy: Policy, now: float) -> Transition:
    if step != conv.step.value:
        return _show(conv, notice="stale_button")
    if conv.step in (Step.VERIFYING, Step.CONNECTING):
        return _show(conv, fresh=False, notice="busy")
    spec = SPECS[conv.step]
    if conv.step == Step.HELD and action in ("stop_retrying", "manual"):
        target = Step.PASTE_KEY if action == "stop_retrying" else Step.DT_LOG_IN
        left = _go(conv, target, now, notice="held_released" if action == "stop_retrying" else None)
        return Transition(left.conversation, (fx.ReleaseHeld(), fx.Audit("held_released", {"then": action}),
                                              *left.effects))
    if action == "back" and spec.back:
        return _go(conv, previous_step(conv, policy), now)
    if action == "stuck" and spec.stuck:
        return Transition(conv.with_(help_shown=True), (fx.Render(),))
    if conv.step == Step.KEY_PROBLEM and conv.problem in PROBLEMS:
        for option in PROBLEMS[conv.problem].actions:
            if option.action == action:
                target = _after_guide_step(conv, option.goes_to, policy)
                return _go(conv, target, now)
    if conv.step == Step.CONFIRM_DISCONNECT:
        if action == "confirm":
            return Transition(conv, (fx.Audit("disconnect_confirmed"), fx.Disconnect(conv.workspace_id, conv.bound_at)))
        if action == "keep":
            return _go(conv, conv.resume_step or Step.CONNECTED, now, resume_step=None)
    for choice in spec.choices:
        if choice.action == action:
            chosen = dict(conv.choices)
            if choice.records:
                chosen[choice.records[0]] = choice.records[1]
            moved = conv.with_(choices=chosen)
            target = choice.goes_to or next_step(moved, policy)
            if target == Step.CONNECTED:  # "Done, it says Connected": the user connected it themselves
                notice, params = _revoke_reminder(moved)
                return _go(_went_live(moved), target, now, notice=notice, notice_params=params)
            if target in LINK_REMINDER_STEPS and _needs_invitation(moved, policy):
                return _go(moved, target, now, notice="link_needed_before_key")
            return _go(moved, target, now)
    return _show(conv, notice="stale_button")


def _after_guide_step(conv: Conversation, target: Step, policy: Policy) -> Step:
    """Pasting needs a workspace first in open mode."""
    if target == Step.PASTE_KEY and policy.asks_workspace and not conv.workspace_id:
        return Step.ENTER_WORKSPACE
    return target


def _on_paste(conv: Conversation, event: ev.KeyPasted, policy: Policy, now: float) -> Transition:
    transition = _paste_verdict(conv, event, policy, now)
    if event.forwarded and event.pasted.looks_secret:  # its own message: the guide is edited again soon
        return Transition(transition.conversation, (fx.Reply("forwarded_original"), *transition.effects))
    return transition


def _paste_verdict(conv: Conversation, event: ev.KeyPasted, policy: Policy, now: float) -> Transition:
    pasted = event.pasted
    notice = "key_warning" if pasted.shape_warning else None
    if conv.step in (Step.VERIFYING, Step.CONNECTING):
        return _show(conv, notice="busy_deleted")
    if conv.step == Step.HELD:  # the buttons under the step let the user stop waiting (issue 11 item 10)
        return _show(conv, notice="held_deleted")
    if not pasted.should_verify or pasted.key is None:
        return _problem(conv, pasted.kind, now, pasted.provider, fresh=True)
    if event.retry_in_minutes is not None:
        return _problem(conv, "over_limit", now, str(event.retry_in_minutes),
                        fx.Audit("over_limit", {"pasted": pasted.kind.value}), fresh=True)
    if policy.asks_workspace and not conv.workspace_id:
        return _go(conv, Step.ENTER_WORKSPACE, now, fresh=True, notice="workspace_first")
    attempt = conv.attempt + 1
    replacing = conv.replacing or conv.step == Step.CONNECTED
    wait = event.queued_s if event.queued_s is not None and event.queued_s > 0 else None
    moved = conv.with_(step=Step.VERIFYING, attempt=attempt, key_last_four=pasted.key.last_four,
                       key_family=pasted.kind, problem=None, problem_detail=None, help_shown=False,
                       replacing=replacing, key_via="miniapp" if event.via_miniapp else "chat",
                       connected_last_four=conv.live_last_four, connected_family=conv.live_family,
                       step_entered_at=now, check_at=now + wait if wait is not None else None)
    params = {"warning": pasted.shape_warning} if pasted.shape_warning else {}
    if wait is not None:
        return _queued(moved, wait, policy, params, "checks_busy_miniapp" if event.via_miniapp else "checks_busy")
    return Transition(moved, (fx.Render(fresh=True, notice=notice, notice_params=params),
                              fx.Verify(attempt, conv.workspace_id)))


def _queued(moved: Conversation, wait: float, policy: Policy, params: dict[str, str], notice: str) -> Transition:
    """Checks are busy (the bot-wide limit): the key waits for its booked slot, the user hears when.

    Sealed in the outbox when the deployment can hold keys for a while (the outbox worker checks it at
    its slot), else in the pipeline task, which sleeps until then. Either way it is checked and answered.
    """
    busy = {**params, "seconds": str(max(1, math.ceil(wait)))}
    audit = fx.Audit("checks_busy", {"wait_s": busy["seconds"]})
    if policy.can_hold and policy.queue_hold_s > 0:
        held = moved.with_(step=Step.HELD)  # check_at kept: the view says it waits its turn, not fails
        return Transition(held, (audit, fx.HoldKey(held.attempt, "verify", wait, at_slot=True),
                                 fx.Render(fresh=True, notice=notice, notice_params=busy)))
    return Transition(moved, (audit, fx.Render(fresh=True, notice=notice, notice_params=busy),
                              fx.Verify(moved.attempt, moved.workspace_id, wait_s=wait)))


def _on_text(conv: Conversation, text: str, policy: Policy, now: float) -> Transition:
    if conv.step == Step.ENTER_WORKSPACE:
        candidate = text.strip()
        if not WORKSPACE_ID.match(candidate):
            return _show(conv, notice="workspace_invalid")
        # Typed, not proven: enough to connect a workspace nobody connected yet (insecure demo mode only),
        # never to replace or disconnect another chat's key (bound_at stays None).
        return _go(conv.with_(workspace_id=candidate, bound_via="typed", bound_at=None), Step.PASTE_KEY, now,
                   fresh=True)
    return _show(conv, notice="use_buttons")


def _on_verdict(conv: Conversation, event: ev.VerificationFinished, policy: Policy, now: float) -> Transition:
    if event.attempt != conv.attempt or conv.step not in (Step.VERIFYING, Step.HELD):
        return Transition(conv)  # a verdict for an abandoned paste: nothing to say
    conv = conv.with_(check_at=None)  # a queued check has had its turn
    outcome = event.result.outcome
    audit = fx.Audit("verified", {"outcome": outcome.value})
    if outcome == VerificationOutcome.VALID:
        if event.already_connected:
            return _go(_went_live(conv), Step.CONNECTED, now, notice="already_connected")
        if policy.auto_connect and conv.workspace_id:
            moved = _go(conv, Step.CONNECTING, now)
            return Transition(moved.conversation, (audit, *moved.effects,
                                                   fx.Connect(conv.attempt, conv.workspace_id, conv.bound_at)))
        moved = _go(conv, Step.DT_LOG_IN, now, notice="verified_connect_yourself")
        return Transition(moved.conversation, (audit, fx.RecordKey("verified", connected=False),
                                               *moved.effects))
    if outcome in (VerificationOutcome.INDETERMINATE, VerificationOutcome.RATE_LIMITED) and policy.can_hold \
            and conv.step != Step.HELD:
        moved = _go(conv, Step.HELD, now)
        return Transition(moved.conversation, (audit, fx.HoldKey(conv.attempt, "verify", event.result.retry_after_s),
                                               *moved.effects))
    detail = event.result.detail
    if outcome == VerificationOutcome.RATE_LIMITED and event.result.retry_after_s:
        detail = str(int(event.result.retry_after_s + 0.999))
    extra: list[fx.Effect] = [audit]
    if outcome.is_definitive_failure:
        extra.append(fx.RecordKey(outcome.value, connected=False))
    return _problem(conv, outcome.value, now, detail, *extra)


def _on_connection(conv: Conversation, event: ev.ConnectionFinished, policy: Policy, now: float) -> Transition:
    if event.attempt != conv.attempt or conv.step not in (Step.CONNECTING, Step.HELD):
        return Transition(conv)
    conv = conv.with_(check_at=None)
    outcome = event.result.outcome
    audit = fx.Audit("connection", {"outcome": outcome.value})
    if outcome == ConnectionOutcome.CONNECTED:
        notice, params = _revoke_reminder(conv)
        moved = _go(_went_live(conv), Step.CONNECTED, now, notice=notice, notice_params=params)
        return Transition(moved.conversation, (audit, fx.RecordKey("connected", connected=True),
                                               *moved.effects))
    if outcome == ConnectionOutcome.NOT_CONFIGURED:
        return _go(conv, Step.DT_LOG_IN, now)
    if outcome == ConnectionOutcome.TRANSIENT and policy.can_hold and conv.step != Step.HELD:
        moved = _go(conv, Step.HELD, now)
        return Transition(moved.conversation, (audit, fx.HoldKey(conv.attempt, "connect", event.result.retry_after_s),
                                               *moved.effects))
    return _problem(conv, outcome.value, now, event.result.detail, audit)


# -- invitations: agents' handoff links (closed mode) ------------------------------------------------
INVITATION_REFUSALS = frozenset({"expired", "revoked", "used", "unknown",
                                 "signed_expired", "signed_forged", "signed_disabled"})
# Closed mode without a link: say so on the way to creating a key, before OpenAI shows it (only once).
LINK_REMINDER_STEPS = frozenset({Step.OPEN_KEYS_PAGE, Step.CREATE_NEW_KEY})


def paste_is_checked(conv: Conversation, policy: Policy) -> bool:
    """Whether a key pasted now goes to OpenAI: only such a paste uses up the user's hourly allowance.

    Not while a check runs, not before a workspace is bound (closed mode) or typed (open mode).
    """
    if conv.step in (Step.VERIFYING, Step.CONNECTING, Step.HELD) or _needs_invitation(conv, policy):
        return False
    return not (policy.asks_workspace and not conv.workspace_id)


def _needs_invitation(conv: Conversation, policy: Policy) -> bool:
    """Closed mode and no workspace bound through an agent's link: no key is verified or connected."""
    return policy.requires_invitation and not conv.workspace_id


def _refuse_uninvited_paste(conv: Conversation, event: ev.KeyPasted, now: float) -> Transition:
    """The runtime deleted the message already; say kindly why nothing was checked, and warn if exposed."""
    problem = PROBLEMS.get(event.pasted.kind.value)
    notice = "invitation_needed_exposed" if problem is not None and problem.exposed else "invitation_needed_deleted"
    moved = _go(conv, Step.INVITATION_NEEDED, now, fresh=True, notice=notice)
    extra: tuple[fx.Effect, ...] = (fx.Reply("forwarded_original"),) if event.forwarded else ()
    audit = fx.Audit("uninvited_paste", {"pasted": event.pasted.kind.value})
    return Transition(moved.conversation, (audit, *extra, *moved.effects))


def _on_invitation(conv: Conversation, event: ev.InvitationRedeemed, now: float) -> Transition:
    """Bind the conversation to the link's workspace; another workspace than before starts afresh."""
    if conv.step in PIPELINE_STEPS or conv.step == Step.DELETING:
        return _show(conv, notice="busy")
    if conv.workspace_id not in (None, event.workspace_id):
        conv = Conversation(step_entered_at=now)
    bound = conv.with_(workspace_id=event.workspace_id,
                       workspace_name=event.workspace_name or conv.workspace_name,
                       bound_via=event.via, bound_at=event.bound_at)
    if event.already_connected and not bound.connected:
        return _go(bound, Step.CONNECTED, now, fresh=True, notice="invitation_already_connected",
                   connected=True, key_last_four=event.connected_last_four, key_family=None,
                   connected_last_four=event.connected_last_four, connected_family=None)
    if bound.step == Step.INVITATION_NEEDED:
        return _go(bound, Step.PASTE_KEY, now, fresh=True, notice="invitation_accepted")
    welcome = "invitation_welcome" if bound.step == Step.WELCOME else "invitation_welcome_back"
    if event.via == "signed_link" and bound.step == Step.WELCOME:
        welcome = "signed_link_welcome"
    return _show(bound, notice=welcome)


def _on_refusal(conv: Conversation, event: ev.InvitationRefused, policy: Policy, now: float) -> Transition:
    """Explain; when the link that bound this user was revoked, the binding ends too (before any key)."""
    notice = f"invitation_{event.reason if event.reason in INVITATION_REFUSALS else 'unknown'}"
    bound_by_it = event.unbind is not None and conv.workspace_id == event.unbind
    if not bound_by_it or conv.connected or conv.step in PIPELINE_STEPS:
        return _show(conv, notice=notice)
    unbound = conv.with_(workspace_id=None, workspace_name=None)
    if _needs_invitation(unbound, policy) and conv.step in (Step.PASTE_KEY, Step.KEY_PROBLEM):
        return _go(unbound, Step.INVITATION_NEEDED, now, fresh=True, notice=notice)
    return _show(unbound, notice=notice)


def _on_changed_elsewhere(conv: Conversation, event: ev.WorkspaceChangedElsewhere, now: float) -> Transition:
    """This chat connected the workspace; another chat replaced or disconnected its key, or tried to."""
    if conv.workspace_id != event.workspace_id:
        return Transition(conv)
    notice = f"workspace_{event.action}_{'refused' if event.refused else 'done'}_elsewhere"
    audit = fx.Audit("workspace_changed_elsewhere", {"action": event.action, "refused": str(event.refused)})
    if event.refused or conv.step in PIPELINE_STEPS:
        return Transition(conv, (audit, fx.Render(fresh=True, notice=notice)))
    # The key this chat connected is gone: its guide no longer says "connected with …abcd".
    cleared = Conversation(workspace_id=conv.workspace_id, workspace_name=conv.workspace_name,
                           bound_via=conv.bound_via, bound_at=conv.bound_at, attempt=conv.attempt,
                           step_entered_at=now)
    return Transition(cleared, (audit, fx.Render(fresh=True, notice=notice)))
