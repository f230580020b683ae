"""The drill's six counts, each computed from what the outside world saw, never from the bot's word.

1. conversations lost: a user who talked to the bot has no stored conversation at the end, or the
   stored step differs from the step the user's chat shows (the bot said something the database does
   not know, or the reverse);
2. keys checked but neither connected nor reported: OpenAI saw the key, DoubleTick does not hold it,
   and the user's chat does not show a verdict about it either;
3. duplicate connections: DoubleTick connected one workspace more than once (idempotent replays of the
   same request do not count: the stand-in does not act on them);
4. duplicate messages or notifications: a chat shows the same bot message twice, or "You're done"
   more than once;
5. plaintext occurrences: the key, a long piece of it, or its hex/base64/base64url/URL-encoded forms in
   anything the bot wrote: logs, database files (or every row of every PostgreSQL table), outbound Bot
   API requests, /metrics;
6. pasted keys still visible: a user's key message is still in their chat at the end (its deletion was
   lost, e.g. to a SIGKILL while it waited out a flood wait).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from bot.bench.drill_user import DrillUser, shown_step
from bot.bench.stack import Database, StandIns
from flows.secret import mask_key
from flows.steps import Step

__all__ = ["Finding", "connect_replays", "count_duplicates", "duplicate_connections", "key_outcomes",
           "lost_conversations", "needles", "plaintext_findings", "scanner_works", "stored_steps", "summarise"]

WINDOW = 24  # a piece of a key this long never appears legitimately (masks show 8 + 4 at most)
VERDICT_STEPS = frozenset({Step.CONNECTED, Step.KEY_PROBLEM, Step.DT_LOG_IN})


@dataclass(frozen=True, slots=True)
class Finding:
    where: str
    secret: str  # masked
    form: str


def needles(secret: str) -> dict[str, bytes]:
    """The forms a leaked key takes: plaintext, hex, URL-encoded, base64(url) at every alignment, pieces."""
    raw = secret.encode()
    forms = {"plaintext": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode(),
             "url-encoded": quote(secret, safe="").encode(), "form-encoded": quote_plus(secret).encode()}
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw)
            forms[f"{name}@{shift}"] = encoded[4 if shift else 0: -4].rstrip(b"=")
    for start in range(0, max(1, len(raw) - WINDOW + 1), WINDOW // 2):
        forms[f"piece[{start}:{start + WINDOW}]"] = raw[start: start + WINDOW]
    return forms


def scanner_works(secret: str) -> bool:
    """Self-check: a key planted as plaintext, base64 and hex in a blob is found in each form."""
    planted = b"x" + secret.encode() + b" y " + base64.b64encode(b"zz" + secret.encode()) + b" " + \
        secret.encode().hex().encode()
    forms = {f.form for f in _scan(planted, [secret], "self-check")}
    return {"plaintext", "hex"} <= forms and any(form.startswith("base64@") for form in forms)


def _scan(blob: bytes, secrets: Sequence[str], where: str) -> list[Finding]:
    return [Finding(where, mask_key(secret), form) for secret in secrets
            for form, needle in needles(secret).items() if needle in blob]


async def _postgres_rows(database: Database) -> list[tuple[str, bytes]]:
    """Every row of every table, as PostgreSQL prints it (bytea as hex)."""
    import asyncpg

    connection = await asyncpg.connect(database.url.replace("+asyncpg", ""))
    try:
        tables = [r["table_name"] for r in await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        out = []
        for table in tables:
            rows = await connection.fetch(f'SELECT t::text AS row FROM "{table}" t')  # noqa: S608 - catalog names
            out.append((f"table {table}", "\n".join(r["row"] for r in rows).encode()))
        return out
    finally:
        await connection.close()


async def plaintext_findings(secrets: Sequence[str], *, standins: StandIns, database: Database,
                             files: Iterable[Path], extra: Iterable[tuple[str, bytes]] = ()) -> list[Finding]:
    """Search everything written for every key."""
    findings: list[Finding] = []
    for path in files:
        if path.is_file():
            findings += _scan(path.read_bytes(), secrets, str(path))
    if database.is_sqlite:
        for path in database.files():
            findings += _scan(path.read_bytes(), secrets, str(path))
    else:
        for where, blob in await _postgres_rows(database):
            findings += _scan(blob, secrets, where)
    for call in standins.telegram.calls():
        params = call.get("params") or {}
        blob = (json.dumps(params, ensure_ascii=False) + "\n" + json.dumps(params)).encode()
        findings += _scan(blob, secrets, f"Bot API call {call.get('method')}")
    for where, blob in extra:
        findings += _scan(blob, secrets, where)
    return findings


def count_duplicates(standins: StandIns, users: Sequence[DrillUser]) -> tuple[int, int]:
    """(visible bot messages repeated in a chat, "You're done" shown more than once)."""
    repeated = done_twice = 0
    for user in users:
        visible = [m for m in standins.telegram.messages(user.chat_id) if m.get("from_bot") and not m.get("deleted")]
        texts = Counter(m.get("text") or m.get("caption") or "" for m in visible)
        repeated += sum(n - 1 for text, n in texts.items() if text and n > 1)
        done_twice += max(0, sum(1 for m in visible if shown_step([m])[0] == Step.CONNECTED) - 1)
    return repeated, done_twice


def keys_left_visible(standins: StandIns, users: Sequence[DrillUser]) -> list[str]:
    """Pasted keys still in a chat at the end (a deletion lost, e.g. to a kill during a flood wait)."""
    return [f"chat {user.chat_id}: message {m['message_id']}" for user in users
            for m in standins.telegram.messages(user.chat_id)
            if not m.get("from_bot") and not m.get("deleted") and user.key in (m.get("text") or "")]


async def stored_steps(database: Database, chat_ids: Sequence[int]) -> dict[int, str]:
    """chat id -> stored step, read straight from the database."""
    from sqlalchemy import select
    from sqlmodel import col

    from storage.db import create_engine
    from storage.models import Conversation

    engine = create_engine(database.url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(col(Conversation.chat_id), col(Conversation.step))
                                            .where(col(Conversation.chat_id).in_(list(chat_ids))))
            return {int(chat_id): str(step) for chat_id, step in rows}
    finally:
        await engine.dispose()


def lost_conversations(standins: StandIns, users: Sequence[DrillUser], stored: dict[int, str]) -> list[str]:
    """Users whose chat and database disagree (or whose conversation is gone)."""
    lost = []
    for user in users:
        shown, _ = shown_step(standins.telegram.messages(user.chat_id))
        if shown is None:
            continue  # the bot never answered this user: nothing to lose
        if user.chat_id not in stored:
            lost.append(f"chat {user.chat_id}: no stored conversation (chat shows {shown.value})")
        elif stored[user.chat_id] != shown.value:
            lost.append(f"chat {user.chat_id}: stored {stored[user.chat_id]}, chat shows {shown.value}")
    return lost


def key_outcomes(standins: StandIns, users: Sequence[DrillUser]) -> tuple[list[str], list[str]]:
    """(keys OpenAI saw whose users were neither connected nor told a verdict,
    keys connected at DoubleTick whose users were never told)."""
    seen = {r.key_sha256 for r in standins.openai.requests if r.key_sha256}
    unreported, untold = [], []
    for user in users:
        digest = hashlib.sha256(user.key.encode()).hexdigest()
        if digest not in seen:
            continue
        workspace = standins.doubletick.workspace(user.workspace)
        connected = workspace is not None and workspace.connected and workspace.key_sha256 == digest
        shown, _ = shown_step(standins.telegram.messages(user.chat_id))
        about = f"chat {user.chat_id}: key {mask_key(user.key)}"
        where = shown.value if shown else "nothing"
        if not connected and shown not in VERDICT_STEPS:
            unreported.append(f"{about} checked, not connected, chat shows {where}")
        elif connected and shown != Step.CONNECTED:
            untold.append(f"{about} connected, chat shows {where}")
    return unreported, untold


def log_of_chats(log_text: str, findings: Sequence[str], per_chat: int = 12) -> dict[str, list[str]]:
    """The bot's last log lines about each chat a finding names ("chat 123: ..."), so a failed drill (a CI
    run that cannot be repeated) says what the bot did for that user, not only that something went wrong."""
    out: dict[str, list[str]] = {}
    for finding in findings:
        chat = finding.split(":", 1)[0]
        if chat.startswith("chat ") and chat not in out:
            named = re.compile(rf"\b{re.escape(chat)}\b")
            lines = [line[-300:] for line in log_text.splitlines() if named.search(line)]
            out[chat] = lines[-per_chat:]
    return out


def duplicate_connections(standins: StandIns, users: Sequence[DrillUser]) -> list[str]:
    """Workspaces DoubleTick connected more than once, with the requests that did it."""
    out = []
    requests = standins.doubletick.requests
    for user in users:
        workspace = standins.doubletick.workspace(user.workspace)
        if workspace is None or workspace.connect_count <= 1:
            continue
        acted = [f"{r.idempotency_key[:8] if r.idempotency_key else '-'}:{r.status}" for r in requests
                 if r.workspace_id == user.workspace and r.method == "POST"]
        out += [f"workspace {user.workspace} (chat {user.chat_id}) connected {workspace.connect_count} times; "
                f"requests (idempotency key:status) {', '.join(acted)}; user did {' / '.join(user.log)}"]
        out += [""] * (workspace.connect_count - 2)  # one entry per extra connection
    return out


def connect_replays(standins: StandIns) -> int:
    """Connect requests DoubleTick answered by replaying an earlier 2xx for the same Idempotency-Key.

    Each is a retry (client timeout, outbox, or a re-paste after a SIGKILL) that would have connected the
    key a second time had the bot not sent the same key; the count shows the exactness path was exercised.
    """
    succeeded: set[str] = set()
    replays = 0
    for r in standins.doubletick.requests:
        if r.method != "POST" or not r.idempotency_key or r.status is None or not 200 <= r.status < 300:
            continue
        replays += r.idempotency_key in succeeded
        succeeded.add(r.idempotency_key)
    return replays


def summarise(findings: Sequence[Finding]) -> list[str]:
    counted = Counter(f"{f.secret} as {f.form} in {f.where}" for f in findings)
    return [f"{text} (x{n})" if n > 1 else text for text, n in counted.most_common(20)]
