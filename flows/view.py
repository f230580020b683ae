"""Turn a conversation into what the user sees: HTML text and rows of buttons, still pure.

Why pure: the Telegram adapter, the terminal try-it mode and the tests all show the same view; only the
last conversion into PTB objects (``bot/telegram/view.py``) knows about Telegram.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field

from flows.capabilities import CAPABILITIES, DEFAULT_CAPABILITIES, permissions_for, permissions_of_scopes, scopes_for
from flows.content import Content
from flows.locales import LOCALES, locale_for
from flows.numbers import duration, isolate, join_list
from flows.numbers import number as format_number
from flows.problems import PROBLEMS
from flows.reminders import REMINDER_CALLBACK_STEP
from flows.secret_shapes import LONGER_THAN_USUAL, NO_OPENAI_MARKER, SHORTER_THAN_USUAL, UNUSUAL_FORMAT
from flows.state import Conversation
from flows.steps import SPECS, Step

__all__ = ["LANGUAGE_CALLBACK", "Button", "View", "ViewSettings", "callback_data", "language_callback",
           "parse_callback_data", "parse_language_callback", "render_language_changed", "render_language_picker",
           "render_problem", "render_reminder", "render_reply", "render_step"]

CALLBACK_SEPARATOR = "|"
MAX_CALLBACK_BYTES = 64  # Bot API limit for callback_data


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    callback: str | None = None
    url: str | None = None
    copy_text: str | None = None
    web_app: str | None = None  # a Mini App URL (opened inside Telegram, with initData)


@dataclass(frozen=True, slots=True)
class View:
    text: str  # Telegram HTML
    rows: tuple[tuple[Button, ...], ...] = ()

    @property
    def buttons(self) -> tuple[Button, ...]:
        return tuple(b for row in self.rows for b in row)


@dataclass(frozen=True, slots=True)
class ViewSettings:
    """Deployment facts that appear in texts; None means "the locale's own words" (``[texts]``)."""

    operator: str | None = None  # None: the locale's own words for "the DoubleTick support team"
    billed_probe: bool = True  # OPENAI_BILLED_PROBE: the paste step says what the check costs
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES  # OPENAI_REQUIRED_CAPABILITIES, for step 1.6
    hold_minutes: int = 15
    retention_days: int = 90
    support_url: str | None = None
    support_contact: str | None = None
    requires_link: bool = False  # closed mode: keys only from chats bound by an agent's or the dashboard's link
    privacy_contact: str | None = None  # PRIVACY_CONTACT: where questions and deletion requests go
    egress_ips: tuple[str, ...] = ()  # OPENAI_EGRESS_IPS: what a customer's IP allowlist must admit
    extra: Mapping[str, str] = field(default_factory=dict)
    miniapp_url: str | None = None  # the key-entry Mini App (HTTPS); None: paste in chat only


def callback_data(step: Step, action: str) -> str:
    data = f"{step.value}{CALLBACK_SEPARATOR}{action}"
    if len(data.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data too long: {data!r}")
    return data


LANGUAGE_CALLBACK = "language"  # callback data "language|pt_BR": a /language button, not a guide step


def language_callback(code: str) -> str:
    return f"{LANGUAGE_CALLBACK}{CALLBACK_SEPARATOR}{code.replace('-', '_')}"


def parse_language_callback(data: str | None) -> str | None:
    """The locale code a /language button carries, or None (forged, unknown)."""
    parsed = parse_callback_data(data)
    if parsed is None or parsed[0] != LANGUAGE_CALLBACK:
        return None
    code = parsed[1].replace("_", "-")
    return code if any(locale.code == code for locale in LOCALES) else None


def parse_callback_data(data: str | None) -> tuple[str, str] | None:
    """Split ``step|action``; anything else (forged, legacy, oversized) is None."""
    if not data or len(data) > MAX_CALLBACK_BYTES or data.count(CALLBACK_SEPARATOR) != 1:
        return None
    step, action = data.split(CALLBACK_SEPARATOR)
    if not (step.replace("_", "").isalnum() and action.replace("_", "").isalnum()):
        return None
    return step, action


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _fill(template: str, params: Mapping[str, str]) -> str:
    return template.strip().format_map(_Params(params))


def _escaped(values: Mapping[str, object]) -> dict[str, str]:
    return {k: html.escape(str(v)) for k, v in values.items() if v is not None}


def _progress(content: Content, number: str | None) -> str:
    if not number:
        return ""
    part, index = number.split(".")
    total = 7 if part == "1" else 4
    code = content.locale
    return content.meta("progress").format(part=format_number(code, int(part)), index=format_number(code, int(index)),
                                           total=format_number(code, total))


# Text written by others (DoubleTick's or OpenAI's error messages) is cut to this many characters before
# it is escaped into a step: a 3,800-character validation message once made a step impossible to show
# (Telegram's limit is 4096 characters per message, https://core.telegram.org/bots/api#sendmessage).
THIRD_PARTY_LIMIT = 300


def shorten_third_party(text: str, limit: int = THIRD_PARTY_LIMIT) -> str:
    """One line, at most ``limit`` characters (with "…"), for quoting another service's message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# Problems whose detail is a number of seconds/minutes to wait: said as a CLDR duration ("5 minutes").
RLM = "\u200f"  # RIGHT-TO-LEFT MARK
WAIT_UNITS = {"rate_limited": "second", "over_limit": "minute"}


def _params(conv: Conversation, settings: ViewSettings, content: Content) -> dict[str, str]:
    code = content.locale
    workspace = conv.workspace_name or conv.workspace_id
    values = _escaped({
        "operator": settings.operator or content.text("operator"),
        "hold_time": duration(code, settings.hold_minutes, "minute"),
        "retention_time": duration(code, settings.retention_days, "day"),
        "support": settings.support_url or settings.support_contact or content.text("support_contact"),
        "privacy_contact": settings.privacy_contact or settings.support_contact or content.text("privacy_contact"),
        "last_four": conv.key_last_four or "????",
        "connected_last_four": conv.live_last_four or "????",
        "detail": shorten_third_party(conv.problem_detail or ""),
        **settings.extra,
    })
    params = {name: isolate(value, code) for name, value in values.items()}
    unit = WAIT_UNITS.get(conv.problem or "")
    if unit and (conv.problem_detail or "").isdigit():
        params["wait"] = isolate(duration(code, int(conv.problem_detail or 0), unit), code)
    params["workspace"] = f" <b>{isolate(html.escape(workspace), code)}</b>" if workspace else ""
    return params


def _permission_line(content: Content, permission: str) -> str:
    label, why = content.permission(permission)
    return content.permission_text("line").format_map(_Params({"label": label, "why": why}))


def _permission_params(conv: Conversation, content: Content, settings: ViewSettings) -> dict[str, str]:
    """Step 1.6 and the missing-permission answer list exactly what OPENAI_REQUIRED_CAPABILITIES needs.

    The labels are trusted HTML from the content file; only OpenAI's scope names (``detail``) are escaped.
    """
    required = permissions_for(settings.capabilities)
    writes = permissions_for(n for n in settings.capabilities if CAPABILITIES[n].writes)
    read_only = (content.permission_text("read_only_refused").format_map(
        _Params({"writes": join_list(content.locale, [content.permission(p)[0] for p in writes])})) if writes
        else content.permission_text("read_only_enough"))
    missing = permissions_of_scopes(conv.problem_detail) if conv.problem == "missing_scope" else ()
    return {
        "required_permissions": "\n".join(_permission_line(content, p) for p in required),
        "required_scopes": ", ".join(f"<code>{isolate(html.escape(s), content.locale)}</code>"
                                     for s in scopes_for(settings.capabilities)),
        "read_only": read_only,
        "missing_permissions": join_list(content.locale, [content.permission(p)[0] for p in missing])
        or content.permission_text("unknown_scope"),
        "probe_note": content.probe_note("billed" if settings.billed_probe else "free"),
        "allowlist_address": _allowlist_address(conv, content, settings),
    }


def _allowlist_address(conv: Conversation, content: Content, settings: ViewSettings) -> str:
    """The address to add to an OpenAI IP allowlist: the one OpenAI named, else the configured ones."""
    named = conv.problem_detail if conv.problem == "ip_not_allowed" else None
    is_address = bool(named) and len(named or "") <= 45 and all(c in "0123456789abcdefABCDEF.:" for c in named or "")
    addresses = (named,) if named and is_address else settings.egress_ips
    if addresses:
        shown = ", ".join(f"<code>{isolate(html.escape(a), content.locale)}</code>" for a in addresses)
        return content.allowlist("known").format_map(_Params({"addresses": shown}))
    support = html.escape(settings.support_url or settings.support_contact or content.text("support_contact"))
    return content.allowlist("unknown").format_map(_Params({"support": isolate(support, content.locale)}))


# The key-shape warnings flows/secret_shapes.py gives, by their name in a locale's [key_warnings].
KEY_WARNINGS = {SHORTER_THAN_USUAL: "shorter", LONGER_THAN_USUAL: "longer", NO_OPENAI_MARKER: "no_marker",
                UNUSUAL_FORMAT: "unusual"}


def _notice_params(content: Content, values: Mapping[str, str] | None) -> dict[str, str]:
    """A notice's own values; a media kind ("photo") and a key-shape warning are said in the locale's words."""
    out = dict(values or {})
    if "kind" in out:
        out["kind"] = str(content.data.get("media_kinds", {}).get(out["kind"], out["kind"]))
    if out.get("warning") in KEY_WARNINGS:
        out["warning"] = str(content.data.get("key_warnings", {}).get(KEY_WARNINGS[out["warning"]], out["warning"]))
    if out.get("seconds", "").isdigit():  # checks busy: "about 7 seconds", with the locale's plural
        out["wait"] = duration(content.locale, int(out.pop("seconds")), "second")
    return {name: isolate(value, content.locale) if name != "kind" else value
            for name, value in _escaped(out).items()}


def render_step(conv: Conversation, content: Content, settings: ViewSettings, notice: str | None = None,
                notice_params: Mapping[str, str] | None = None) -> View:
    """The guide message for the conversation's current step."""
    spec = SPECS[conv.step]
    texts = content.step(conv.step)
    if conv.step == Step.HELD and conv.check_at is not None:  # queued for a busy check (issue 14), not failing
        texts = {**texts, "title": texts["title_queued"], "text": texts["text_queued"]}
    params = {**_params(conv, settings, content), **_permission_params(conv, content, settings)}
    if conv.step == Step.KEY_PROBLEM and conv.problem in PROBLEMS:
        if conv.problem == "deletion_failed":  # a reason code; say it in words
            params["detail"] = html.escape(content.deletion_reason(conv.problem_detail or "other"))
        params["problem"] = _fill(content.problem(conv.problem), params)
    parts: list[str] = []
    if notice:
        notice_values = {**params, **_notice_params(content, notice_params)}
        parts.append(f"<i>{_fill(content.notice(notice), notice_values)}</i>")
    progress = _progress(content, spec.number)
    heading = f"<b>{html.escape(texts['title'])}</b>"
    parts.append(f"{html.escape(progress)}\n{heading}" if progress else heading)
    text = texts.get("text_miniapp") if conv.key_via == "miniapp" else None  # nothing was deleted
    parts.append(_fill(text or texts["text"], params))
    if conv.step == Step.WELCOME and settings.requires_link and not conv.workspace_id:
        parts.append(_fill(content.notice("closed_welcome"), params))  # how this bot is reached, first thing
    if conv.help_shown:
        # 🆘 is a strong left-to-right character (Unicode bidi class L): in a right-to-left locale a
        # RIGHT-TO-LEFT MARK first keeps the paragraph right to left.
        mark = RLM if locale_for(content.locale).rtl else ""
        parts.append(f"{mark}🆘 " + _fill(texts["help"], params))
    return View("\n\n".join(parts), _keyboard(conv, content, settings))


def _keyboard(conv: Conversation, content: Content, settings: ViewSettings) -> tuple[tuple[Button, ...], ...]:
    spec = SPECS[conv.step]
    rows: list[tuple[Button, ...]] = []
    links = list(spec.links)
    actions = [(c.action, content.button(c.action)) for c in spec.choices]
    support = False
    if conv.step == Step.KEY_PROBLEM and conv.problem in PROBLEMS:
        problem = PROBLEMS[conv.problem]
        links.extend(problem.links)
        actions = [(a.action, content.button(a.action)) for a in problem.actions]
        support = problem.support
    if conv.step == Step.PASTE_KEY and settings.miniapp_url:  # typed on our page, never a message
        url = f"{settings.miniapp_url}?lang={content.locale}"
        rows.append((Button(content.button("enter_securely"), web_app=url),))
    rows.extend((Button(content.link(link.name), url=link.url),) for link in links)
    if support and settings.support_url:
        rows.append((Button(content.link("support"), url=settings.support_url),))
    for name in spec.copy_texts:
        label, text = content.copy(name)
        rows.append((Button(label, copy_text=text),))
    rows.extend((Button(label, callback=callback_data(conv.step, action)),) for action, label in actions)
    footer = []
    if spec.back:
        footer.append(Button(content.button("back"), callback=callback_data(conv.step, "back")))
    if spec.stuck and not conv.help_shown:
        footer.append(Button(content.button("stuck"), callback=callback_data(conv.step, "stuck")))
    if footer:
        rows.append(tuple(footer))
    return tuple(rows)


def render_problem(name: str, content: Content, settings: ViewSettings, detail: str | None = None) -> str:
    """The help text the guide shows for problem ``name`` (e.g. a wrong paste), as Telegram HTML."""
    conv = Conversation(step=Step.KEY_PROBLEM, problem=name, problem_detail=detail)
    return _fill(content.problem(name),
                 {**_params(conv, settings, content), **_permission_params(conv, content, settings)})


def render_reminder(conv: Conversation, content: Content, settings: ViewSettings) -> View:
    """The one short reminder: where the user stopped, Continue, and a way to turn reminders off."""
    step = content.step(conv.step)["title"]
    text = _fill(content.reply("reminder"),
                 {**_params(conv, settings, content), "step": isolate(html.escape(step), content.locale)})
    rows = ((Button(content.button("continue"), callback=f"{REMINDER_CALLBACK_STEP}{CALLBACK_SEPARATOR}continue"),),
            (Button(content.button("stop_reminders"), callback=f"{REMINDER_CALLBACK_STEP}{CALLBACK_SEPARATOR}stop"),))
    return View(text, rows)


def render_reply(name: str, content: Content, settings: ViewSettings,
                 params: Mapping[str, str] | None = None) -> str:
    """A standalone informational message (help, privacy ...); ``params`` fill its placeholders."""
    base = _params(Conversation(), settings, content)
    extra = {k: isolate(v, content.locale) for k, v in _escaped(params or {}).items()}
    text = _fill(content.reply(name), {**base, **extra})
    if name == "help" and settings.requires_link:
        text += "\n\n" + _fill(content.notice("closed_help"), base)
    return text


def render_language_picker(content: Content) -> View:
    """/language: the six languages as buttons, each named in its own language; the current one ticked."""
    current = locale_for(content.locale).code
    rows = tuple((Button(("✅ " if locale.code == current else "") + locale.name,
                          callback=language_callback(locale.code)),) for locale in LOCALES)
    return View(_fill(content.language("prompt"), {}), rows)


def render_language_changed(content: Content) -> str:
    name = html.escape(locale_for(content.locale).name)
    return _fill(content.language("changed"), {"language": isolate(name, content.locale)})

