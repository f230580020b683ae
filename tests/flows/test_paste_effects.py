"""What a paste asks of the world: the effects the e2e key-pipeline tests rely on, as plain calls."""

from __future__ import annotations

import json

from flows import effects as fx
from flows import events as ev
from flows.inspection import inspect_pasted_text
from flows.machine import Policy, advance
from flows.outcomes import ConnectionOutcome, ConnectionResult, VerificationOutcome, VerificationResult
from flows.state import Conversation
from flows.steps import Step

KEY = "sk-proj-" + "Ab3dEf5hIj7lMn9pQr1t" + "T3Blbk" + "FJ" + "Uv2xYz4bCd6fGh8jKl0n"
OPEN = Policy(auto_connect=True, asks_workspace=True, can_hold=True)


def at_paste(**changes: object) -> Conversation:
    return Conversation(step=Step.PASTE_KEY, workspace_id="ws_demo").with_(**changes)


def test_verification_carries_the_workspace_so_already_connected_is_judged_there() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY)), OPEN, 10.0)
    assert fx.Verify(1, "ws_demo") in t.effects


def test_a_forwarded_key_gets_a_lasting_reply_before_the_guide() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), forwarded=True), OPEN, 10.0)
    assert t.effects[0] == fx.Reply("forwarded_original")
    assert any(isinstance(e, fx.Verify) for e in t.effects)


def test_forwarded_text_that_is_no_secret_is_not_called_a_key() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text("hello"), forwarded=True), OPEN, 10.0)
    assert fx.Reply("forwarded_original") not in t.effects


def test_held_keys_wait_at_least_as_long_as_the_service_asked() -> None:
    verifying = at_paste(step=Step.VERIFYING, attempt=1)
    throttled = VerificationResult(VerificationOutcome.RATE_LIMITED, retry_after_s=20.0)
    t = advance(verifying, ev.VerificationFinished(1, throttled), OPEN, 10.0)
    assert fx.HoldKey(1, "verify", 20.0) in t.effects
    connecting = at_paste(step=Step.CONNECTING, attempt=1)
    busy = ConnectionResult(ConnectionOutcome.TRANSIENT, retry_after_s=7.0)
    t = advance(connecting, ev.ConnectionFinished(1, busy), OPEN, 10.0)
    assert fx.HoldKey(1, "connect", 7.0) in t.effects


def test_the_over_limit_audit_detail_fits_the_audit_log_signature() -> None:
    t = advance(at_paste(), ev.KeyPasted(inspect_pasted_text(KEY), retry_in_minutes=5), OPEN, 10.0)
    audits = [e for e in t.effects if isinstance(e, fx.Audit)]
    # AuditLog.record(kind, chat_id=..., actor_user_id=..., **detail): detail must not reuse those names
    assert audits and not {"kind", "chat_id", "actor_user_id"} & set(audits[0].detail)
    json.dumps(dict(audits[0].detail))


def test_a_cut_off_key_is_verified_with_its_warning_shown() -> None:
    pasted = inspect_pasted_text(KEY[:-10])
    assert pasted.should_verify and pasted.shape_warning
    t = advance(at_paste(), ev.KeyPasted(pasted), OPEN, 10.0)
    render = next(e for e in t.effects if isinstance(e, fx.Render))
    assert render.notice == "key_warning" and render.notice_params["warning"] == pasted.shape_warning
