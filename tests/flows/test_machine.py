"""Every transition of the pure machine, by plain function calls."""

from __future__ import annotations

import pytest

from flows import effects as fx
from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance, next_step, previous_step
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationOutcome, VerificationResult
from flows.problems import PROBLEMS
from flows.state import Conversation
from flows.steps import GUIDE_ORDER, SPECS, Step

KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3BlbkFJ" + "Uv2xYz4bCd6fGh8jKl0n"
MANUAL = Policy()
AUTO = Policy(auto_connect=True)
HOLD = Policy(auto_connect=True, can_hold=True)
OPEN = Policy(auto_connect=True, asks_workspace=True)


def step(conv: Conversation, event: ev.Event, policy: Policy = MANUAL, now: float = 100.0):
    return advance(conv, event, policy, now)


def press(conv: Conversation, action: str, policy: Policy = MANUAL):
    return step(conv, ev.ButtonPressed(conv.step.value, action), policy)


def walk(actions: list[str], policy: Policy = MANUAL) -> Conversation:
    conv = Conversation()
    for action in actions:
        conv = press(conv, action, policy).conversation
    return conv


def renders(transition) -> list[fx.Render]:
    return [e for e in transition.effects if isinstance(e, fx.Render)]


PERSONAL_PATH = ["begin", "next", "next", "personal", "next", "default", "all", "copied"]
SERVICE_PATH = ["begin", "next", "next", "service", "next", "existing", "copied"]


def test_personal_owner_walks_every_guide_step_in_order() -> None:
    conv = Conversation()
    seen = [conv.step]
    for action in PERSONAL_PATH:
        conv = press(conv, action).conversation
        seen.append(conv.step)
    assert seen == [
        Step.WELCOME,
        Step.OPEN_KEYS_PAGE,
        Step.CREATE_NEW_KEY,
        Step.CHOOSE_OWNER,
        Step.NAME_KEY,
        Step.CHOOSE_PROJECT,
        Step.CHOOSE_PERMISSIONS,
        Step.COPY_KEY,
        Step.PASTE_KEY,
    ]
    assert conv.choices == {"owner": "personal", "project": "default", "permissions": "all"}


def test_service_account_skips_permissions_because_openai_shows_none() -> None:
    conv = walk(SERVICE_PATH)
    assert conv.step == Step.PASTE_KEY
    assert "permissions" not in conv.choices
    assert walk(SERVICE_PATH[:-1]).step == Step.COPY_KEY


def test_restricted_permissions_shows_the_needed_permissions_step() -> None:
    conv = walk(["begin", "next", "next", "personal", "next", "default", "restricted"])
    assert conv.step == Step.RESTRICTED_PERMISSIONS
    assert press(conv, "next").conversation.step == Step.COPY_KEY


def test_back_retraces_the_path_taken_including_skips() -> None:
    conv = walk(SERVICE_PATH)
    back = []
    while conv.step != Step.WELCOME:
        conv = press(conv, "back").conversation
        back.append(conv.step)
    assert back == [
        Step.COPY_KEY,
        Step.CHOOSE_PROJECT,
        Step.NAME_KEY,
        Step.CHOOSE_OWNER,
        Step.CREATE_NEW_KEY,
        Step.OPEN_KEYS_PAGE,
        Step.WELCOME,
    ]


def test_back_from_restricted_goes_to_permissions_and_from_copy_to_restricted() -> None:
    conv = walk(["begin", "next", "next", "personal", "next", "default", "restricted", "next"])
    assert conv.step == Step.COPY_KEY
    assert previous_step(conv, MANUAL) == Step.RESTRICTED_PERMISSIONS
    changed = press(press(press(conv, "back").conversation, "back").conversation, "all").conversation
    assert changed.step == Step.COPY_KEY and changed.choices["permissions"] == "all"
    assert previous_step(changed, MANUAL) == Step.CHOOSE_PERMISSIONS


def test_welcome_has_no_back_and_back_there_is_treated_as_stale() -> None:
    t = press(Conversation(), "back")
    assert t.conversation.step == Step.WELCOME
    assert renders(t)[0].notice == "stale_button"


def test_im_stuck_shows_help_in_place_on_every_step_that_offers_it() -> None:
    for s, spec in SPECS.items():
        if not spec.stuck:
            continue
        t = press(Conversation(step=s, problem="invalid"), "stuck")
        assert t.conversation.help_shown and t.conversation.step == s, s
        assert renders(t) == [fx.Render()]
        if spec.choices and s != Step.CONFIRM_DISCONNECT:
            assert not press(t.conversation, spec.choices[0].action).conversation.help_shown, s


def test_a_button_from_an_older_step_gets_a_friendly_notice_and_the_current_step() -> None:
    conv = walk(PERSONAL_PATH[:4])
    t = step(conv, ev.ButtonPressed(Step.WELCOME.value, "begin"))
    assert t.conversation == conv
    assert renders(t) == [fx.Render(fresh=True, notice="stale_button")]


@pytest.mark.parametrize(
    "data", [("choose_owner", "admin"), ("nonsense", "x"), ("", ""), ("choose_owner", "")]
)
def test_forged_buttons_never_change_state(data: tuple[str, str]) -> None:
    conv = walk(PERSONAL_PATH[:3])
    t = step(conv, ev.ButtonPressed(*data))
    assert t.conversation == conv and renders(t)[0].notice == "stale_button"


def test_start_resumes_where_the_user_left_off_days_later() -> None:
    conv = walk(PERSONAL_PATH[:5])
    t = step(conv, ev.Started(), now=conv.step_entered_at + 5 * 86400)
    assert t.conversation.step == Step.CHOOSE_PROJECT == conv.step
    assert renders(t) == [fx.Render(fresh=True, notice="welcome_back")]


def test_start_on_a_new_conversation_shows_welcome_without_notice() -> None:
    assert renders(step(Conversation(), ev.Started())) == [fx.Render(fresh=True)]


def test_start_after_an_interrupted_verification_asks_for_the_key_again() -> None:
    conv = Conversation(step=Step.VERIFYING, step_entered_at=0.0, attempt=3)
    t = step(conv, ev.Started(), now=1000.0)
    assert t.conversation.step == Step.PASTE_KEY and renders(t)[0].notice == "interrupted"
    assert step(conv, ev.Started(), now=10.0).conversation.step == Step.VERIFYING


def test_restart_goes_back_to_welcome_but_keeps_the_workspace_and_connection() -> None:
    conv = Conversation(
        step=Step.CONNECTED,
        connected=True,
        workspace_id="ws_demo",
        key_last_four="abcd",
        choices={"owner": "service"},
    )
    t = step(conv, ev.RestartAsked())
    assert t.conversation.step == Step.WELCOME and t.conversation.choices == {}
    assert t.conversation.workspace_id == "ws_demo" and t.conversation.connected


def test_cancel_forgets_progress() -> None:
    t = step(walk(PERSONAL_PATH), ev.CancelAsked())
    assert fx.Forget() in t.effects and fx.Reply("cancelled") in t.effects
    assert t.conversation.step == Step.WELCOME


@pytest.mark.parametrize("event, reply", [(ev.HelpAsked(), "help"), (ev.PrivacyAsked(), "privacy")])
def test_help_and_privacy_reply_and_keep_the_step(event: ev.Event, reply: str) -> None:
    conv = walk(PERSONAL_PATH[:3])
    t = step(conv, event)
    assert t.conversation == conv and t.effects[0] == fx.Reply(reply)


def test_pasting_a_key_starts_verification_and_keeps_only_last_four() -> None:
    conv = walk(PERSONAL_PATH)
    t = step(conv, ev.KeyPasted(inspect_pasted_text(KEY)))
    assert t.conversation.step == Step.VERIFYING
    assert t.conversation.key_last_four == KEY[-4:] and t.conversation.key_family == "project"
    assert fx.Verify(t.conversation.attempt) in t.effects
    assert KEY not in repr(t) and KEY not in str(t.conversation.to_record())


def test_a_key_pasted_early_is_accepted_from_any_guide_step() -> None:
    conv = walk(PERSONAL_PATH[:3])
    assert step(conv, ev.KeyPasted(inspect_pasted_text(KEY))).conversation.step == Step.VERIFYING


@pytest.mark.parametrize(
    "text, kind",
    [
        ("sk-admin-" + "a" * 58 + "T3BlbkFJ" + "b" * 58, "admin"),
        ("sk-proj-abc...wxyz", "masked"),
        ("org-" + "A1b2C3d4E5f6G7h8I9j0K1l2", "organization_id"),
        ("hello there", "not_a_key"),
    ],
)
def test_unverifiable_pastes_explain_the_problem_without_verifying(text: str, kind: str) -> None:
    t = step(walk(PERSONAL_PATH), ev.KeyPasted(inspect_pasted_text(text)))
    assert t.conversation.step == Step.KEY_PROBLEM and t.conversation.problem == kind
    assert not any(isinstance(e, fx.Verify) for e in t.effects)


def test_over_the_submission_limit_nothing_is_verified() -> None:
    t = step(walk(PERSONAL_PATH), ev.KeyPasted(inspect_pasted_text(KEY), retry_in_minutes=12))
    assert t.conversation.problem == "over_limit" and t.conversation.problem_detail == "12"
    assert not any(isinstance(e, fx.Verify) for e in t.effects)


def verifying(policy: Policy = MANUAL, **kw) -> Conversation:
    conv = walk(PERSONAL_PATH, policy).with_(**kw)
    return step(conv, ev.KeyPasted(inspect_pasted_text(KEY)), policy).conversation


def test_valid_key_without_auto_connect_leads_to_guided_step_two() -> None:
    conv = verifying()
    t = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.VALID)))
    assert t.conversation.step == Step.DT_LOG_IN
    assert fx.RecordKey("verified", connected=False) in t.effects
    done = t.conversation
    for action in ("next", "next", "next", "done"):
        done = press(done, action).conversation
    assert done.step == Step.CONNECTED and done.connected


def test_valid_key_with_auto_connect_connects_then_done() -> None:
    conv = verifying(AUTO, workspace_id="ws_demo")
    t = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.VALID)), AUTO)
    assert t.conversation.step == Step.CONNECTING
    assert fx.Connect(conv.attempt, "ws_demo") in t.effects
    t = step(
        t.conversation,
        ev.ConnectionFinished(conv.attempt, ConnectionResult(ConnectionOutcome.CONNECTED)),
        AUTO,
    )
    assert t.conversation.step == Step.CONNECTED and t.conversation.connected
    assert fx.RecordKey("connected", connected=True) in t.effects


def test_already_connected_key_is_recognised() -> None:
    conv = verifying(AUTO, workspace_id="ws_demo")
    t = step(
        conv,
        ev.VerificationFinished(
            conv.attempt, VerificationResult(VerificationOutcome.VALID), already_connected=True
        ),
        AUTO,
    )
    assert t.conversation.step == Step.CONNECTED and renders(t)[0].notice == "already_connected"


@pytest.mark.parametrize("outcome", [o for o in VerificationOutcome if o != VerificationOutcome.VALID])
def test_every_failed_verdict_becomes_its_own_problem(outcome: VerificationOutcome) -> None:
    conv = verifying()
    t = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(outcome, detail="d")))
    assert t.conversation.step == Step.KEY_PROBLEM and t.conversation.problem == outcome.value
    assert outcome.value in PROBLEMS


@pytest.mark.parametrize("outcome", [VerificationOutcome.INDETERMINATE, VerificationOutcome.RATE_LIMITED])
def test_unsure_verdicts_are_held_for_retry_when_the_outbox_exists(outcome: VerificationOutcome) -> None:
    conv = verifying(HOLD, workspace_id="ws")
    t = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(outcome)), HOLD)
    assert t.conversation.step == Step.HELD and fx.HoldKey(conv.attempt, "verify") in t.effects


def test_indeterminate_is_never_reported_as_invalid() -> None:
    conv = verifying()
    t = step(
        conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.INDETERMINATE))
    )
    assert t.conversation.problem == "indeterminate"


def test_rate_limited_detail_is_the_wait_in_seconds() -> None:
    conv = verifying()
    result = VerificationResult(VerificationOutcome.RATE_LIMITED, retry_after_s=19.2)
    assert step(conv, ev.VerificationFinished(conv.attempt, result)).conversation.problem_detail == "20"


def test_a_verdict_for_an_abandoned_paste_is_ignored() -> None:
    conv = verifying()
    t = step(conv, ev.VerificationFinished(conv.attempt - 1, VerificationResult(VerificationOutcome.INVALID)))
    assert t.conversation == conv and t.effects == ()


@pytest.mark.parametrize(
    "outcome, expected",
    [
        (ConnectionOutcome.CREDENTIAL_REJECTED, "credential_rejected"),
        (ConnectionOutcome.VALIDATION_ERROR, "validation_error"),
        (ConnectionOutcome.TRANSIENT, "transient"),
    ],
)
def test_connection_failures_offer_the_manual_route(outcome: ConnectionOutcome, expected: str) -> None:
    conv = verifying(AUTO, workspace_id="ws").with_(step=Step.CONNECTING)
    t = step(conv, ev.ConnectionFinished(conv.attempt, ConnectionResult(outcome)), AUTO)
    assert t.conversation.problem == expected
    assert "manual" in [a.action for a in PROBLEMS[expected].actions]


def test_transient_connection_failure_is_held_when_possible() -> None:
    conv = verifying(HOLD, workspace_id="ws").with_(step=Step.CONNECTING)
    t = step(conv, ev.ConnectionFinished(conv.attempt, ConnectionResult(ConnectionOutcome.TRANSIENT)), HOLD)
    assert t.conversation.step == Step.HELD and fx.HoldKey(conv.attempt, "connect") in t.effects


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_every_problem_action_leads_somewhere_sensible(problem: str) -> None:
    conv = Conversation(step=Step.KEY_PROBLEM, problem=problem)
    for option in PROBLEMS[problem].actions:
        assert press(conv, option.action).conversation.step == option.goes_to


def test_paste_again_in_open_mode_without_workspace_asks_for_it() -> None:
    conv = Conversation(step=Step.KEY_PROBLEM, problem="invalid")
    assert press(conv, "paste_again", OPEN).conversation.step == Step.ENTER_WORKSPACE


def test_open_mode_asks_for_the_workspace_before_pasting() -> None:
    conv = walk(PERSONAL_PATH, OPEN)
    assert conv.step == Step.ENTER_WORKSPACE
    assert renders(step(conv, ev.TextSent("not valid!!")))[0].notice == "workspace_invalid"
    t = step(conv, ev.TextSent(" acme-sales "), OPEN)
    assert t.conversation.step == Step.PASTE_KEY and t.conversation.workspace_id == "acme-sales"
    assert next_step(conv.with_(step=Step.COPY_KEY), OPEN) == Step.ENTER_WORKSPACE


def test_stray_text_and_media_get_a_pointer_and_keep_the_step() -> None:
    conv = walk(PERSONAL_PATH[:4])
    assert renders(step(conv, ev.TextSent("hi")))[0].notice == "use_buttons"
    assert renders(step(conv, ev.MediaSent("sticker")))[0].notice == "media_elsewhere"
    paste = walk(PERSONAL_PATH)
    assert renders(step(paste, ev.MediaSent("photo")))[0].notice == "media_at_paste"


def test_deletion_failure_walks_the_user_through_revoking() -> None:
    t = step(walk(PERSONAL_PATH), ev.DeletionFailed("too_old"))
    assert t.conversation.problem == "deletion_failed" and PROBLEMS["deletion_failed"].exposed
    assert [a.action for a in PROBLEMS["deletion_failed"].actions] == ["new_key"]


def test_buttons_while_verifying_say_busy() -> None:
    conv = verifying()
    assert renders(press(conv, "back"))[0].notice == "busy"
    assert renders(step(conv, ev.KeyPasted(inspect_pasted_text(KEY))))[0].notice == "busy_deleted"


def test_replace_walks_a_new_key_through_and_reminds_to_revoke_the_old_one() -> None:
    connected = Conversation(step=Step.CONNECTED, connected=True, key_last_four="OLD1", workspace_id="ws")
    t = step(connected, ev.ReplaceAsked(), AUTO)
    assert t.conversation.step == Step.PASTE_KEY and t.conversation.replacing
    conv = step(t.conversation, ev.KeyPasted(inspect_pasted_text(KEY)), AUTO).conversation
    conv = step(
        conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.VALID)), AUTO
    ).conversation
    t = step(conv, ev.ConnectionFinished(conv.attempt, ConnectionResult(ConnectionOutcome.CONNECTED)), AUTO)
    assert renders(t)[0].notice == "revoke_old_key"
    assert renders(t)[0].notice_params == {"old_last_four": "OLD1"}
    assert not t.conversation.replacing


SERVICE_KEY = "sk-svcacct-" + "Q" * 74 + "T3BlbkFJ" + "r" * 70 + "CLhr"
REFUSED_KEY = "sk-proj-" + "Zz3dEf5hIj7lMn9pQr1t" + "T3BlbkFJ" + "Uv2xYz4bCd6fGh8jlSGA"


def _connect(conv, key: str, policy: Policy = AUTO):
    conv = step(conv, ev.KeyPasted(inspect_pasted_text(key)), policy).conversation
    conv = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.VALID)),
                policy).conversation
    return step(conv, ev.ConnectionFinished(conv.attempt, ConnectionResult(ConnectionOutcome.CONNECTED)), policy)


def test_a_refused_replacement_never_takes_the_place_of_the_connected_key() -> None:
    """Issue 11 item 1: connect …CLhr, /replace, paste a refused key …lSGA, /replace again."""
    start = Conversation(step=Step.PASTE_KEY, workspace_id="ws")
    live = _connect(start, SERVICE_KEY).conversation
    assert (live.connected_last_four, live.connected_family) == ("CLhr", "service_account")
    conv = step(live, ev.ReplaceAsked(), AUTO).conversation
    conv = step(conv, ev.KeyPasted(inspect_pasted_text(REFUSED_KEY)), AUTO).conversation
    invalid = VerificationResult(VerificationOutcome.INVALID, detail="sk-proj-****lSGA")
    conv = step(conv, ev.VerificationFinished(conv.attempt, invalid), AUTO).conversation
    assert conv.step == Step.KEY_PROBLEM and conv.key_last_four == "lSGA" and conv.live_last_four == "CLhr"
    again = step(conv, ev.ReplaceAsked(), AUTO)
    assert renders(again)[0].notice_params == {"last_four": "CLhr"}
    ask = step(again.conversation, ev.DisconnectAsked(), AUTO).conversation
    assert ask.step == Step.CONFIRM_DISCONNECT and ask.live_last_four == "CLhr"
    done = _connect(again.conversation, KEY)
    assert renders(done)[0].notice == "revoke_old_key"
    assert renders(done)[0].notice_params == {"old_last_four": "CLhr"}
    assert done.conversation.live_last_four == KEY[-4:]


def test_a_new_key_after_restart_still_reminds_to_revoke_the_connected_one() -> None:
    live = _connect(Conversation(step=Step.PASTE_KEY, workspace_id="ws"), SERVICE_KEY).conversation
    restarted = step(live, ev.RestartAsked(), AUTO).conversation
    assert restarted.step == Step.WELCOME and restarted.live_last_four == "CLhr" and not restarted.replacing
    conv = restarted.with_(step=Step.PASTE_KEY)
    done = _connect(conv, KEY)
    assert renders(done)[0].notice_params == {"old_last_four": "CLhr"}


def test_a_manually_connected_key_over_a_live_one_reminds_to_revoke_it() -> None:
    live = _connect(Conversation(step=Step.PASTE_KEY, workspace_id="ws"), SERVICE_KEY).conversation
    conv = step(live.with_(step=Step.PASTE_KEY), ev.KeyPasted(inspect_pasted_text(KEY)), MANUAL).conversation
    conv = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.VALID)),
                MANUAL).conversation
    conv = conv.with_(step=Step.DT_PASTE_CONNECT)
    done = press(conv, "done", MANUAL)
    assert done.conversation.step == Step.CONNECTED and done.conversation.live_last_four == KEY[-4:]
    assert renders(done)[0].notice_params == {"old_last_four": "CLhr"}


def test_cancel_while_connected_keeps_the_connection_and_says_so() -> None:
    live = _connect(Conversation(step=Step.PASTE_KEY, workspace_id="ws"), SERVICE_KEY).conversation
    t = step(live.with_(step=Step.NAME_KEY, choices={"owner": "service"}), ev.CancelAsked(), AUTO)
    assert fx.Forget() not in t.effects
    assert fx.Reply("cancelled_still_connected", {"last_four": "CLhr"}) in t.effects
    assert t.conversation.connected and t.conversation.choices == {} and t.conversation.step == Step.CONNECTED
    ask = step(t.conversation, ev.DisconnectAsked(), AUTO)
    assert ask.conversation.step == Step.CONFIRM_DISCONNECT


def test_replace_without_a_connection_says_so() -> None:
    assert renders(step(Conversation(), ev.ReplaceAsked()))[0].notice == "nothing_to_replace"


def test_disconnect_asks_first_then_disconnects_or_keeps() -> None:
    connected = Conversation(step=Step.CONNECTED, connected=True, workspace_id="ws", key_last_four="abcd")
    ask = step(connected, ev.DisconnectAsked())
    assert ask.conversation.step == Step.CONFIRM_DISCONNECT
    assert press(ask.conversation, "keep").conversation.step == Step.CONNECTED
    confirm = press(ask.conversation, "confirm")
    assert fx.Disconnect("ws") in confirm.effects
    done = step(confirm.conversation, ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.CONNECTED)))
    assert not done.conversation.connected and fx.Reply("disconnected") in done.effects
    failed = step(confirm.conversation, ev.DisconnectFinished(ConnectionResult(ConnectionOutcome.TRANSIENT)))
    assert failed.conversation.connected and renders(failed)[0].notice == "disconnect_failed"


def test_disconnect_without_connection_says_nothing_is_connected() -> None:
    assert renders(step(Conversation(), ev.DisconnectAsked()))[0].notice == "nothing_connected"


def test_state_round_trips_through_its_record() -> None:
    conv = verifying(AUTO, workspace_id="ws")
    assert Conversation.from_record(conv.to_record()) == conv
    assert Conversation.from_record({"step": "removed_step", "unknown": 1}).step == Step.WELCOME


def test_guide_order_covers_every_navigable_step() -> None:
    assert set(GUIDE_ORDER) <= set(SPECS)


# -- issue 11 items 10 and 11 ------------------------------------------------------------------------------


def _held() -> Conversation:
    conv = verifying(HOLD, workspace_id="ws")
    t = step(conv, ev.VerificationFinished(conv.attempt, VerificationResult(VerificationOutcome.INDETERMINATE)), HOLD)
    assert t.conversation.step == Step.HELD
    return t.conversation


def test_a_paste_while_a_key_is_held_offers_a_way_out() -> None:
    held = _held()
    t = step(held, ev.KeyPasted(inspect_pasted_text(KEY)), HOLD)
    assert t.conversation.step == Step.HELD and renders(t)[0].notice == "held_deleted"
    assert [c.action for c in SPECS[Step.HELD].choices] == ["stop_retrying", "manual"]


@pytest.mark.parametrize("action, target", [("stop_retrying", Step.PASTE_KEY), ("manual", Step.DT_LOG_IN)])
def test_giving_up_on_a_held_key_shreds_it(action: str, target: Step) -> None:
    t = press(_held(), action, HOLD)
    assert t.conversation.step == target and fx.ReleaseHeld() in t.effects
    late = step(t.conversation, ev.VerificationFinished(t.conversation.attempt,
                                                        VerificationResult(VerificationOutcome.VALID)), HOLD)
    assert late.conversation.step == target  # a retry that finished meanwhile changes nothing


def test_a_hold_whose_key_was_never_sealed_asks_for_the_key_again_once() -> None:
    held = _held()
    t = step(held, ev.HoldLost(held.attempt), HOLD)
    assert t.conversation.step == Step.PASTE_KEY and renders(t)[0].notice == "interrupted" and renders(t)[0].fresh
    assert fx.Audit("hold_lost") in t.effects and t.conversation.workspace_id == "ws"
    assert step(t.conversation, ev.HoldLost(held.attempt), HOLD).effects == ()  # moved on: nothing more to say
    assert step(held, ev.HoldLost(held.attempt - 1), HOLD).effects == ()  # an older attempt's hold


def test_restart_while_a_key_is_held_shreds_it() -> None:
    t = step(_held(), ev.RestartAsked(), HOLD)
    assert t.conversation.step != Step.HELD and fx.ReleaseHeld() in t.effects


def test_fix_the_permissions_ends_on_editing_the_existing_key() -> None:
    conv = Conversation(step=Step.KEY_PROBLEM, problem="missing_scope", problem_detail="model.request")
    t = press(conv, "fix_permissions")
    assert t.conversation.step == Step.EDIT_PERMISSIONS
    assert press(t.conversation, "saved").conversation.step == Step.PASTE_KEY
    assert press(t.conversation, "back").conversation.step == Step.PASTE_KEY


# -- the one gentle reminder --------------------------------------------------------------------------------


def test_reminder_due_only_mid_guide_before_a_key_and_once() -> None:
    from flows.reminders import reminder_due

    assert reminder_due(Conversation(step=Step.NAME_KEY))
    assert reminder_due(Conversation(step=Step.DT_INTEGRATIONS))
    for conv in (Conversation(), Conversation(step=Step.PASTE_KEY), Conversation(step=Step.HELD),
                 Conversation(step=Step.KEY_PROBLEM), Conversation(step=Step.CONNECTED, connected=True),
                 Conversation(step=Step.NAME_KEY, reminded=True), Conversation(step=Step.NAME_KEY, reminders_off=True),
                 Conversation(step=Step.NAME_KEY, connected=True)):
        assert not reminder_due(conv), conv.step


def test_the_first_thing_done_after_a_reminder_counts_as_coming_back_once() -> None:
    reminded = Conversation(step=Step.NAME_KEY, reminded=True)
    cont = step(reminded, ev.ButtonPressed("reminder", "continue"))
    assert fx.Audit("came_back_after_reminder", {"step": "name_key"}) in cont.effects
    assert cont.conversation.came_back and renders(cont)[0].notice == "welcome_back"
    again = press(cont.conversation, "next")
    assert not any(isinstance(e, fx.Audit) and e.kind == "came_back_after_reminder" for e in again.effects)
    typed = step(reminded, ev.TextSent("hello"))
    assert typed.conversation.came_back


def test_reminders_can_be_turned_off_by_command_or_button_and_stay_off_after_restart() -> None:
    conv = Conversation(step=Step.NAME_KEY, reminded=True)
    by_button = step(conv, ev.ButtonPressed("reminder", "stop"))
    by_command = step(Conversation(step=Step.NAME_KEY), ev.StopRemindersAsked())
    for t in (by_button, by_command):
        assert t.conversation.reminders_off and fx.Reply("reminders_stopped") in t.effects
    assert not by_button.conversation.came_back  # "no more reminders" is not coming back
    assert step(by_command.conversation, ev.RestartAsked()).conversation.reminders_off


def test_cancel_while_a_replacement_is_held_shreds_it_and_keeps_the_connection() -> None:
    held = _held().with_(connected=True, connected_last_four="CLhr")
    t = step(held, ev.CancelAsked(), HOLD)
    assert fx.ReleaseHeld() in t.effects and t.conversation.step == Step.CONNECTED
    assert t.conversation.live_last_four == "CLhr"
