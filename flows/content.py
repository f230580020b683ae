"""Guide texts as data: one TOML file per locale under ``flows/content/``.

Why data: writers can change wording without touching handlers, a new locale is a new file, and a test
checks that every step, problem, notice and button has its text.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from flows.capabilities import CAPABILITIES
from flows.locales import DEFAULT_LOCALE, locale_for
from flows.problems import PROBLEMS
from flows.steps import SPECS, Step

__all__ = ["CONTENT_FOLDER", "MEDIA_KINDS", "MINIAPP_TEXTS", "Content", "load_content", "missing_content"]

CONTENT_FOLDER = Path(__file__).with_name("content")


@dataclass(frozen=True)
class Content:
    """Lookup of texts for one locale; raises KeyError on anything missing (caught by the tests)."""

    locale: str
    data: dict[str, Any]

    def _section(self, name: str) -> dict[str, Any]:
        section = self.data.get(name, {})
        return section if isinstance(section, dict) else {}

    def step(self, step: Step) -> dict[str, str]:
        return dict(self._section("steps")[step.value])

    def button(self, action: str) -> str:
        return str(self._section("buttons")[action])

    def link(self, name: str) -> str:
        return str(self._section("links")[name])

    def copy(self, name: str) -> tuple[str, str]:
        entry = self._section("copy")[name]
        return str(entry["label"]), str(entry["text"])

    def problem(self, name: str) -> str:
        return str(self._section("problems")[name]["text"])

    def notice(self, name: str) -> str:
        return str(self._section("notices")[name])

    def reply(self, name: str) -> str:
        return str(self._section("replies")[name])

    def deletion_reason(self, name: str) -> str:
        reasons = self._section("deletion_reasons")
        return str(reasons.get(name) or reasons["other"])

    def callback_answer(self, name: str) -> str:
        return str(self._section("callback_answers")[name])

    def commands(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._section("commands").items()}

    def meta(self, name: str) -> str:
        return str(self._section("meta")[name])

    def miniapp(self, name: str) -> str:
        """A text of the Mini App key page (plain text, not HTML)."""
        return str(self._section("miniapp")[name])

    def permission(self, name: str) -> tuple[str, str]:
        """An OpenAI key permission: (label, why DoubleTick needs it), both Telegram HTML."""
        entry = self._section("permissions")[name]
        return str(entry["label"]), str(entry["why"])

    def permission_text(self, name: str) -> str:
        return str(self._section("permission_texts")[name])

    def allowlist(self, name: str) -> str:
        return str(self._section("allowlist")[name])

    def probe_note(self, name: str) -> str:
        return str(self._section("probe_notes")[name])

    def text(self, name: str) -> str:
        """A phrase the code fills into others (default operator name, probe cost ...): ``[texts]``."""
        return str(self._section("texts")[name])

    def language(self, name: str) -> str:
        """The /language picker's texts: ``[language]``."""
        return str(self._section("language")[name])

    def plural(self, name: str) -> dict[str, str]:
        """A count's forms by CLDR plural category: ``[plurals.<name>]`` (see :func:`flows.numbers.count`)."""
        return {str(k): str(v) for k, v in self._section("plurals")[name].items()}


@cache
def load_content(locale: str | None = DEFAULT_LOCALE) -> Content:
    """Load a locale's content: a Telegram ``language_code`` or one of our codes (``flows.locales``);
    anything we don't speak falls back to English (Telegram's advice)."""
    code = locale_for(locale).code
    path = CONTENT_FOLDER / f"{code}.toml"
    if not path.is_file():  # listed in LOCALES but its file is missing: the tests catch this
        code, path = DEFAULT_LOCALE, CONTENT_FOLDER / f"{DEFAULT_LOCALE}.toml"
    return Content(code, tomllib.loads(path.read_text(encoding="utf-8")))


REQUIRED_NOTICES = (
    "media_deleted",
    "welcome_back", "restarted", "stale_button", "busy", "busy_deleted", "held_deleted", "held_released",
    "interrupted", "use_buttons", "still_deleting_unused", "deleting_interrupted",
    "media_at_paste", "media_elsewhere", "forwarded_original", "workspace_invalid", "workspace_first",
    "verified_connect_yourself", "already_connected", "revoke_old_key", "replace_intro",
    "nothing_to_replace", "nothing_connected", "disconnect_failed", "key_warning",
    "invitation_needed_deleted", "invitation_needed_exposed", "invitation_welcome", "invitation_welcome_back",
    "invitation_accepted", "invitation_already_connected", "invitation_expired", "invitation_revoked",
    "invitation_used", "invitation_unknown",
)
REQUIRED_REPLIES = ("help", "privacy", "cancelled", "cancelled_still_connected", "reminder", "reminders_stopped",
                    "disconnected", "group_redirect",
                    "group_deleted", "group_cannot_delete", "forwarded_original", "deletion_failed_late")
MINIAPP_TEXTS = ("title", "intro", "label", "placeholder", "show", "hide", "submit", "what_happens", "empty",
                 "checking", "done", "held", "problem", "expired", "not_at_paste_step", "rate_limited",
                 "unavailable", "network", "open_in_telegram")
REQUIRED_COMMANDS = ("start", "restart", "cancel", "replace", "disconnect", "help", "privacy", "stop_reminders",
                     "language")
REQUIRED_TEXTS = ("operator", "support_contact", "privacy_contact")
MEDIA_KINDS = ("message", "photo", "sticker", "document", "video", "voice", "audio", "animation", "video note",
               "contact", "location", "poll", "dice")
REQUIRED_LANGUAGE = ("prompt", "changed")


def missing_content(content: Content) -> list[str]:
    """Every text the machine can ask for that this locale lacks, as dotted paths."""
    missing: list[str] = []

    def need(path: str, getter: Any, *args: Any) -> None:
        try:
            value = getter(*args)
        except (KeyError, TypeError):
            missing.append(path)
            return
        if isinstance(value, dict):
            missing.extend(f"{path}.{k}" for k in ("title", "text", "help") if not str(value.get(k, "")).strip())
        elif isinstance(value, tuple):
            if not all(str(v).strip() for v in value):
                missing.append(path)
        elif not str(value).strip():
            missing.append(path)

    for step, spec in SPECS.items():
        need(f"steps.{step.value}", content.step, step)
        for choice in spec.choices:
            need(f"buttons.{choice.action}", content.button, choice.action)
        for link in spec.links:
            need(f"links.{link.name}", content.link, link.name)
        for name in spec.copy_texts:
            need(f"copy.{name}", content.copy, name)
    for name, problem in PROBLEMS.items():
        need(f"problems.{name}", content.problem, name)
        for option in problem.actions:
            need(f"buttons.{option.action}", content.button, option.action)
        for link in problem.links:
            need(f"links.{link.name}", content.link, link.name)
    for action in ("back", "next", "stuck", "continue", "stop_reminders"):
        need(f"buttons.{action}", content.button, action)
    need("links.support", content.link, "support")
    for name in REQUIRED_NOTICES:
        need(f"notices.{name}", content.notice, name)
    for name in REQUIRED_REPLIES:
        need(f"replies.{name}", content.reply, name)
    commands = content.commands()
    missing.extend(f"commands.{c}" for c in REQUIRED_COMMANDS if not commands.get(c))
    need("meta.progress", content.meta, "progress")
    need("buttons.enter_securely", content.button, "enter_securely")
    need("steps.verifying.text_miniapp", lambda: content.step(Step.VERIFYING)["text_miniapp"])
    need("steps.held.text_queued", lambda: content.step(Step.HELD)["text_queued"])
    need("steps.held.title_queued", lambda: content.step(Step.HELD)["title_queued"])
    for name in MINIAPP_TEXTS:
        need(f"miniapp.{name}", content.miniapp, name)
    for permission in dict.fromkeys(c.permission for c in CAPABILITIES.values()):
        need(f"permissions.{permission}", content.permission, permission)
    for name in ("line", "read_only_refused", "read_only_enough", "unknown_scope"):
        need(f"permission_texts.{name}", content.permission_text, name)
    for name in ("known", "unknown"):
        need(f"allowlist.{name}", content.allowlist, name)
    for name in ("billed", "free"):
        need(f"probe_notes.{name}", content.probe_note, name)
    for name in REQUIRED_TEXTS:
        need(f"texts.{name}", content.text, name)
    for kind in MEDIA_KINDS:
        need(f"media_kinds.{kind}", lambda k: content._section("media_kinds")[k], kind)
    for name in ("shorter", "longer", "no_marker", "unusual"):
        need(f"key_warnings.{name}", lambda k: content._section("key_warnings")[k], name)
    for name in REQUIRED_LANGUAGE:
        need(f"language.{name}", content.language, name)
    for reason in ("too_old", "no_rights", "other"):
        need(f"deletion_reasons.{reason}", content.deletion_reason, reason)
    return missing
