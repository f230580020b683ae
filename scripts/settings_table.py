"""Print every setting of ``bot.config.Settings`` as a Markdown table, or as the body of ``.env.example``.

Why generated: the defaults live in one place (``Settings.model_fields``); the README, the operator's
guide and ``.env.example`` must never drift from them. The one-line meanings and examples live here,
keyed by field name, and a test fails when a setting has none.

Run from the repository root:
    .venv/bin/python scripts/settings_table.py                 # the Markdown table
    .venv/bin/python scripts/settings_table.py --env-example   # the body of .env.example
    .venv/bin/python scripts/settings_table.py --write         # regenerate .env.example and docs/deploying.md
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOYING = ROOT / "docs" / "deploying.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = [
    "DOCS",
    "Row",
    "SettingDoc",
    "env_example",
    "rows",
    "settings_table",
    "undocumented",
    "with_table",
    "write_generated",
]

_TOKEN = 'python -c "import secrets;print(secrets.token_urlsafe(32))"'


@dataclass(frozen=True)
class SettingDoc:
    """What an operator needs to know about one setting besides its default."""

    group: str
    meaning: str
    example: str = ""
    generate: str | None = None  # for secrets: the command that makes a good value


@dataclass(frozen=True)
class Row:
    """One setting as documented: environment variable, rendered default, example, meaning."""

    env: str
    default: str | None  # None = unset
    example: str
    meaning: str
    secret: bool
    generate: str | None


# Field name -> documentation, in the order the table and .env.example list them.
DOCS: dict[str, SettingDoc] = {
    "telegram_bot_token": SettingDoc(
        "Telegram", "Bot token from @BotFather (`/newbot`); required by `run` and `webhook set`.",
        "123456789:AAH...", "@BotFather /newbot (or /token to reissue)"),
    "telegram_api_base_url": SettingDoc(
        "Telegram", "Bot API server; change only for a self-hosted Bot API server or the local stand-ins.",
        "http://127.0.0.1:8081"),
    "webhook_url": SettingDoc(
        "Webhook mode", "Public HTTPS URL of the `/telegram` endpoint that `onboarding-bot webhook set` "
        "registers (ports 443, 80, 88 or 8443 only).", "https://bot.example.com/telegram"),
    "webhook_listen": SettingDoc(
        "Webhook mode", "Address the webhook server (`run --webhook`) binds.", "127.0.0.1"),
    "webhook_port": SettingDoc(
        "Webhook mode", "Port the webhook server binds (behind a TLS proxy, any free port).", "8080"),
    "webhook_answer": SettingDoc(
        "Webhook mode", "When Telegram gets its 200: `after_processing` (the update is handled first; a "
        "transient failure answers 503 and Telegram redelivers: at least once) or `after_guard` (as soon as a "
        "pasted key is deleted; the update waits in this process's queue, a transient failure is retried "
        "here, a crash loses what waits, as in polling). `after_guard` keeps deletions fast under bursts "
        "that outrun processing (docs/benchmarks.md).", "after_guard"),
    "webhook_queue_max": SettingDoc(
        "Webhook mode", "With `WEBHOOK_ANSWER=after_guard` or `WEBHOOK_GUARD_PORT`: updates waiting beyond "
        "this are answered 503 (after their key is deleted), so Telegram holds the rest of a burst.", "5000"),
    "webhook_guard_port": SettingDoc(
        "Webhook mode", "Set: the guard lane (its process, or its thread with `GUARD_LANE=thread`) takes "
        "Telegram's POSTs on this port of `WEBHOOK_LISTEN`, deletes a pasted key, hands the update to the main "
        "process and answers 200, whatever the main loop is busy with; `WEBHOOK_PORT` keeps the Mini App, the "
        "agents' API, probes and metrics. Point `WEBHOOK_URL` and the proxy's webhook route at it; delivery "
        "as with `after_guard` (README \"Webhook intake on the guard process\").", "8081"),
    "webhook_secret_token": SettingDoc(
        "Webhook mode", "Shared secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token`; requests "
        "without it are refused (32-256 of `A-Z a-z 0-9 _ -`).", "", _TOKEN),
    "public_base_url": SettingDoc(
        "Mini App", "The bot's public HTTPS origin; set, the paste step offers the key-entry Mini App at "
        "`/miniapp/key` (served on WEBHOOK_LISTEN:WEBHOOK_PORT, also when polling). Plain http only for "
        "loopback (development).", "https://bot.example.com"),
    "miniapp_max_age_s": SettingDoc(
        "Mini App", "Refuse Mini App initData older than this many seconds (its `auth_date`).", "900"),
    "miniapp_submissions_per_user_per_hour": SettingDoc(
        "Mini App", "Key submissions from the Mini App per Telegram user per hour (per process).", "10"),
    "miniapp_requests_per_address_per_minute": SettingDoc(
        "Mini App", "Mini App API requests per client address per minute (per process; behind a proxy set "
        "uvicorn's FORWARDED_ALLOW_IPS to it).", "60"),
    "handoff_api_token": SettingDoc(
        "Support agents", "Bearer token support tooling presents to `/api/handoffs` (at least 16 characters); "
        "unset disables the API.",
        "", _TOKEN),
    "agent_user_ids": SettingDoc(
        "Support agents", "Telegram user ids (comma-separated) of support agents: they create handoff links "
        "and are told how their customers get on.", "111111111,222222222"),
    "self_serve_link_secret": SettingDoc(
        "Support agents", "Shared secret (at least 32 characters) that verifies self-serve links "
        "`t.me/<bot>?start=<payload>` signed by DoubleTick's dashboard or `onboarding-bot link sign` "
        "(recipe in the README); unset: such links are refused.", "", _TOKEN),
    "admin_user_ids": SettingDoc(
        "Support agents", "Telegram user ids (comma-separated) of admins: agents who may also add and remove "
        "agents from the chat (`/add_agent`).", "111111111"),
    "handoff_link_ttl_hours": SettingDoc(
        "Support agents", "How long a handoff link stays valid, in hours.", "24"),
    "stuck_after_minutes": SettingDoc(
        "Support agents", "Tell the agent when their customer has sat at one step this long, in minutes.", "60"),
    "stuck_check_interval_s": SettingDoc(
        "Support agents", "How often the bot looks for stuck customers, in seconds.", "300"),
    "bot_username": SettingDoc(
        "Support agents", "The bot's @username for links made outside the chat (CLI, API); unset = asked from "
        "Telegram (getMe).", "DoubleTickOnboardingBot"),
    "database_url": SettingDoc(
        "Storage", "SQLAlchemy URL. SQLite for one process; PostgreSQL for several replicas "
        "(`postgres://` and `postgresql://` are accepted as pasted).",
        "postgresql://onboarding:PASSWORD@db:5432/onboarding"),
    "key_encryption_keys": SettingDoc(
        "Secrets", "Key-encryption keys sealing held keys in the retry outbox, `kid:base64url` entries, "
        "comma-separated, newest first; required by `run`.", "k20260101-a1b2c3:...,k20250601-d4e5f6:...",
        "onboarding-bot keys generate"),
    "fingerprint_secret": SettingDoc(
        "Secrets", "HMAC secret for key fingerprints (at least 16 characters); never change it, or known "
        "keys stop being recognised; required by `run`.", "", _TOKEN),
    "openai_api_base_url": SettingDoc(
        "OpenAI", "OpenAI API base URL used to verify pasted keys.", "https://api.openai.com/v1"),
    "openai_required_models": SettingDoc(
        "OpenAI", "Comma-separated models the DoubleTick integration needs; each must be visible to the key.",
        "gpt-4o-mini,gpt-4o"),
    "openai_required_capabilities": SettingDoc(
        "OpenAI", "Comma-separated OpenAI endpoints DoubleTick calls (models.read, chat.completions, embeddings, "
        "moderations, responses, assistants, threads, files, vector_stores): step 1.6 lists exactly their "
        "permissions, and each is proven by a free probe (a key lacking one is `missing_scope`).",
        "models.read,chat.completions,responses"),
    "openai_billed_probe": SettingDoc(
        "OpenAI", "Send a 1-token completion (announced to the user) to detect missing credit; `false` only "
        "lists models and probes permissions (free).", "false"),
    "openai_egress_ips": SettingDoc(
        "OpenAI", "Public addresses the bot calls OpenAI from, comma-separated: told to customers whose "
        "project has an IP allowlist (unset: they are told to ask support).", "203.0.113.7"),
    "openai_probe_model": SettingDoc("OpenAI", "Model used for the billed probe.", "gpt-4o-mini"),
    "openai_timeout_s": SettingDoc("OpenAI", "Timeout of one request to OpenAI, in seconds.", "5"),
    "doubletick_api_base_url": SettingDoc(
        "DoubleTick", "DoubleTick public API base URL.", "https://public.doubletick.io"),
    "doubletick_api_key": SettingDoc(
        "DoubleTick", "DoubleTick API key (from the DoubleTick dashboard) used to connect keys automatically; "
        "unset = customers connect manually (guided Step 2)."),
    "doubletick_connect_path": SettingDoc(
        "DoubleTick", "Path of DoubleTick's OpenAI-integration endpoint; unset = customers connect manually.",
        "/v1/integrations/openai"),
    "doubletick_timeout_s": SettingDoc("DoubleTick", "Timeout of one request to DoubleTick, in seconds.", "5"),
    "insecure_demo_open_workspaces": SettingDoc(
        "Behaviour", "INSECURE, demos only (try mode, the sandbox): anyone may type any workspace id and connect "
        "a key to a workspace nobody connected yet. Never in production: customers get in through links.",
        "true"),
    "outbox_hold_minutes": SettingDoc(
        "Behaviour", "Longest time a sealed key waits in the retry outbox before it is shredded.", "30"),
    "outbox_first_retry_s": SettingDoc(
        "Behaviour", "Delay before the first retry of a held key, in seconds (then doubling).", "10"),
    "outbox_poll_s": SettingDoc("Behaviour", "How often the outbox worker looks for due retries, in seconds.",
                                "2"),
    "pipeline_timeout_s": SettingDoc(
        "Behaviour", "A key still being verified or connected after this many seconds lost its pipeline with a "
        "crashed process; the user is told to paste again. Keep it above the longest pipeline.", "90"),
    "operator_name": SettingDoc("Behaviour", "Who runs the bot, as named in messages and /privacy.",
                                "Acme's DoubleTick team"),
    "support_url": SettingDoc("Behaviour", "Link offered when a user asks for human help; it becomes a Telegram "
                              "button, so only https://, http:// (host with a dot) or tg:// links are accepted.",
                              "https://example.com/support"),
    "support_contact": SettingDoc("Behaviour", "Name of the human support channel, as shown to users.",
                                  "@acme_support"),
    "privacy_contact": SettingDoc(
        "Behaviour", "Where /privacy sends questions and deletion requests (an e-mail address or @handle); "
        "set it: unset falls back to SUPPORT_CONTACT, then SUPPORT_URL, if set; with none, `run` warns at start.",
        "privacy@example.com"),
    "reminder_after_hours": SettingDoc(
        "Behaviour", "Send one reminder (Continue / No more reminders) to a customer idle this many hours "
        "mid-guide, before pasting a key; 0 turns reminders off.", "48"),
    "reminder_check_interval_s": SettingDoc(
        "Behaviour", "How often the bot looks for customers due a reminder, in seconds.", "600"),
    "retention_days": SettingDoc("Behaviour", "Idle conversations are deleted after this many days.", "30"),
    "key_submissions_per_user_per_hour": SettingDoc(
        "Limits", "Key pastes a user may submit per hour (counted in the database: all replicas together).", "3"),
    "verifications_per_minute": SettingDoc(
        "Limits",
        "Verifications sent to OpenAI per minute, whole bot (counted in the database: all replicas together).",
        "120"),
    "verification_queue_per_process": SettingDoc(
        "Limits",
        "Over VERIFICATIONS_PER_MINUTE a paste waits for its slot; when keys cannot be held (OUTBOX_HOLD_MINUTES "
        "0) it waits in memory, at most this many per process (more are refused with 'try again in N minutes').",
        "500"),
    "telegram_max_rate_per_s": SettingDoc(
        "Limits", "The bot's whole outbound Telegram Bot API budget, requests per second, shared by the replicas.",
        "25"),
    "replicas": SettingDoc(
        "Limits", "How many replicas run; each takes 1/REPLICAS of TELEGRAM_MAX_RATE_PER_S. Keep it equal to the "
        "replica count.", "3"),
    "telegram_max_wait_s": SettingDoc(
        "Limits", "Longest Telegram flood wait (429 retry_after) waited out inside a handler, in seconds; a longer "
        "one is waited out in the background and the saved step shown after it.", "10"),
    "telegram_delete_deadline_s": SettingDoc(
        "Limits", "How long deleting a pasted key is retried (flood waits honoured in full) before the user is told "
        "Telegram is slow to delete it (the key then waits unused, it is not called exposed), in seconds.", "60"),
    "telegram_delete_background_s": SettingDoc(
        "Limits", "Past that deadline the deletion goes on in the background this long, the key waiting unused in "
        "memory; if it never succeeds the user is told the key is exposed, in seconds.", "600"),
    "telegram_delete_notice_after_s": SettingDoc(
        "Limits", "Say \"deleting…\" to the user only when deleting their key message takes longer than this, "
        "in seconds.", "3"),
    "log_level": SettingDoc(
        "Operations", "Log level (DEBUG, INFO, WARNING, ERROR, CRITICAL); keep INFO or higher in production.",
        "WARNING"),
    "guard_lane": SettingDoc(
        "Operations", "Polling mode: where updates are received and pasted keys deleted, apart from the busy main "
        "loop: `process` (a child process, so not even the interpreter lock delays a deletion), `thread` (a thread "
        "of its own; `true` means this) or `off` (`false`: PTB's updater in the main loop).", "thread"),
}

def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def _render(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _fields() -> Mapping[str, FieldInfo]:
    from bot.config import Settings

    return Settings.model_fields


# Fields kept only to refuse them at start with an explanation (never documented as settings).
REMOVED = frozenset({"open_mode"})


def rows(fields: Mapping[str, FieldInfo] | None = None) -> list[Row]:
    """Every setting of ``fields`` (default: ``Settings``), documented ones first, in DOCS order."""
    fields = _fields() if fields is None else fields
    fields = {name: field for name, field in fields.items() if name not in REMOVED}
    names = [name for name in DOCS if name in fields]
    names += [name for name in fields if name not in DOCS]
    out: list[Row] = []
    for name in names:
        doc = DOCS.get(name, SettingDoc("Other", "(undocumented: add it to scripts/settings_table.py)"))
        field = fields[name]
        default = _render(field.get_default(call_default_factory=True))
        secret = _is_secret(field)
        out.append(Row(name.upper(), default, doc.example, doc.meaning, secret, doc.generate))
    return out


def undocumented(fields: Mapping[str, FieldInfo] | None = None) -> list[str]:
    """Fields of ``Settings`` that have no entry in :data:`DOCS`."""
    fields = _fields() if fields is None else fields
    return [name.upper() for name in fields if name not in DOCS and name not in REMOVED]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str | None) -> str:
    return f"`{_cell(text)}`" if text else ""


def settings_table(items: Iterable[Row] | None = None) -> str:
    """The Markdown table: variable | default | example | meaning."""
    lines = ["| variable | default | example | meaning |", "|---|---|---|---|"]
    for row in rows() if items is None else items:
        default = "*(unset)*" if row.default is None else _code(row.default) or "*(empty)*"
        example = f"*get:* `{_cell(row.generate)}`" if row.secret and row.generate else _code(row.example)
        meaning = _cell(row.meaning) + (" **Secret.**" if row.secret else "")
        lines.append(f"| `{row.env}` | {default} | {example} | {meaning} |")
    return "\n".join(lines)


def env_example(items: Iterable[Row] | None = None) -> str:
    """The body of ``.env.example``: every setting commented out at its default, with a one-line comment."""
    out = [
        "# Every setting of the onboarding bot, at its default. Generated by scripts/settings_table.py",
        "# (--env-example); the table with examples is in docs/deploying.md.",
        "# Copy to .env (never commit it) and uncomment what you change: an uncommented empty line sets an",
        "# empty value, which is not the same as unset.",
    ]
    group = None
    for row in rows() if items is None else items:
        doc_group = DOCS[row.env.lower()].group if row.env.lower() in DOCS else "Other"
        if doc_group != group:
            group = doc_group
            out += ["", f"# --- {group} ---"]
        out.append(f"# {row.meaning}" + (" Secret." if row.secret else ""))
        if row.secret and row.generate:
            out.append(f"# Get one: {row.generate}")
        out.append(f"# {row.env}={'' if row.secret or row.default is None else row.default}")
    return "\n".join(out) + "\n"


def with_table(text: str, table: str | None = None) -> str:
    """``text`` with the table placed between its ``<!-- settings:start/end -->`` markers."""
    body = settings_table() if table is None else table
    pattern = re.compile(r"(<!-- settings:start -->\n).*?(<!-- settings:end -->)", re.S)
    return pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)


def write_generated() -> list[Path]:
    """Regenerate ``.env.example`` and the table in ``docs/deploying.md``; return the files changed."""
    changed = []
    for path, render in ((ENV_EXAMPLE, lambda _: env_example()), (DEPLOYING, with_table)):
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        new = render(old)
        if new != old:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--env-example", action="store_true", help="print the body of .env.example")
    group.add_argument("--write", action="store_true", help="regenerate .env.example and docs/deploying.md")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_generated():
            print(f"updated {path.relative_to(ROOT)}")
    elif args.env_example:
        print(env_example(), end="")
    else:
        print(settings_table())
    missing = undocumented()
    if missing:
        print(f"undocumented settings: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
