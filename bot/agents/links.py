"""Handoff links: an agent invites one customer into the bot, bound to one DoubleTick workspace.

Why this shape:
- The token is 144 random bits in base64url (24 characters, within Telegram's 64-character ``start``
  payload) and only its SHA-256 digest is stored. A plain hash is enough because the token is random
  (nothing to guess from a leaked digest), and lookup by digest means no token is ever compared in
  Python, so there is no timing side channel.
- Single use is one conditional UPDATE in the database (``HandoffRepository.claim``), so two people
  opening the same link at once cannot both win, on any replica.
- Creation goes through :class:`HandoffService` whichever way it is asked for (bot command, CLI, HTTP
  API), so validation, expiry and auditing are the same for all three.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qs, urlparse

import qrcode
from telegram.helpers import create_deep_linked_url

from flows import events as ev
from flows.inspection import might_carry_secret
from flows.machine import WORKSPACE_ID
from storage.models import HandoffLink
from storage.repositories import AuditLog, HandoffRepository
from storage.timestamps import utcnow

__all__ = [
    "MAX_LABEL",
    "MAX_TTL",
    "MAX_WORKSPACE_NAME",
    "TOKEN_BYTES",
    "HandoffError",
    "HandoffService",
    "LinkState",
    "NewLink",
    "Redemption",
    "RedemptionOutcome",
    "deep_link_payload",
    "digest_of",
    "link_for",
    "new_token",
    "parse_duration",
    "qr_png",
    "token_from",
]

TOKEN_BYTES = 18  # 144 random bits -> 24 base64url characters
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{22,64}")  # Telegram allows A-Z a-z 0-9 _ - up to 64 in ?start=
MAX_LABEL = 64
MAX_WORKSPACE_NAME = 128
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
_DURATION = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*(m|min|h|d)?\s*")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", None: "hours"}


def new_token() -> str:
    """A fresh opaque link token (``secrets``, base64url)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest_of(token: str) -> str:
    """What the database keeps of a token: hex SHA-256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# A message that is only a deep link (tapping it is what the customer was meant to do; pasting works too).
_DEEP_LINK = re.compile(r"(?i)\s*<?(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/[A-Za-z0-9_]{3,64}"
                        r"/?\?start=([A-Za-z0-9_-]{1,64})>?\s*")


def deep_link_payload(text: str) -> str | None:
    """The ``start`` payload when the whole message is a ``t.me/<bot>?start=<payload>`` link."""
    match = _DEEP_LINK.fullmatch(text or "")
    return match.group(1) if match else None


def token_from(text: str) -> str | None:
    """The token in a raw token, a ``/start <token>`` text or a ``t.me/<bot>?start=<token>`` link."""
    text = text.strip()
    if text.startswith("/start"):
        text = text.split(maxsplit=1)[1] if " " in text else ""
    if "start=" in text:
        parsed = urlparse(text if "://" in text else "https://" + text)
        values = parse_qs(parsed.query).get("start", [])
        text = values[0] if values else ""
    return text if _TOKEN_SHAPE.fullmatch(text) else None


def link_for(bot_username: str, token: str) -> str:
    """``https://t.me/<bot>?start=<token>``: opens the private chat with the bot and sends /start."""
    return create_deep_linked_url(bot_username, token)


def qr_png(link: str) -> bytes:
    """A PNG QR code of ``link``, for a customer at a desktop who continues on their phone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(link)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


def parse_duration(text: str) -> timedelta:
    """``72h``, ``30m``, ``3d`` or a bare number of hours; between one minute and 30 days."""
    match = _DURATION.fullmatch(text or "")
    if match is None:
        raise HandoffError("bad_expiry", "expiry must look like 72h, 30m or 3d")
    amount, unit = float(match.group(1)), match.group(2)
    duration = timedelta(**{_UNITS[unit.lower() if unit else None]: amount})
    if not MIN_TTL <= duration <= MAX_TTL:
        raise HandoffError("bad_expiry", "expiry must be between 1 minute and 30 days")
    return duration


class HandoffError(ValueError):
    """A request to create or change a link that cannot be honoured; ``reason`` names which rule."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LinkState(StrEnum):
    WAITING = "waiting"  # not opened yet
    OPENED = "opened"
    EXPIRED = "expired"
    REVOKED = "revoked"

    @classmethod
    def of(cls, link: HandoffLink, now: datetime) -> LinkState:
        if link.revoked_at is not None:
            return cls.REVOKED
        if link.redeemed_by_user_id is not None:
            return cls.OPENED
        return cls.EXPIRED if link.expires_at <= now else cls.WAITING


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link just created: the only moment its URL exists outside the customer's chat."""

    id: int
    url: str
    workspace_id: str
    workspace_name: str | None
    label: str | None
    expires_at: datetime
    created_by: int | None

    def qr_png(self) -> bytes:
        return qr_png(self.url)


class RedemptionOutcome(StrEnum):
    REDEEMED = "redeemed"  # first opening: now bound to this user
    REOPENED = "reopened"  # the bound user opened it again
    USED = "used"  # bound to someone else
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # forged, tampered, truncated, or never existed


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: RedemptionOutcome
    link: HandoffLink | None = None
    was_bound: bool = False  # the link had bound this very user (a revoked link then unbinds them)

    @property
    def accepted(self) -> bool:
        return self.outcome in (RedemptionOutcome.REDEEMED, RedemptionOutcome.REOPENED)


def _clean(value: str | None, limit: int, reason: str, what: str) -> str | None:
    if value and might_carry_secret(value):  # never stored, never echoed (the message names no value)
        raise HandoffError(reason, f"{what} looks like it holds a secret key; it was not stored")
    value = " ".join((value or "").split())
    if len(value) > limit:
        raise HandoffError(reason, f"{what} can be at most {limit} characters")
    return value or None


class HandoffService:
    """Create, redeem, list and revoke handoff links; every action is audited."""

    def __init__(self, links: HandoffRepository, audit: AuditLog, *, bot_username: str | Callable[[], str],
                 default_ttl: timedelta = timedelta(hours=72),
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.links = links
        self.audit = audit
        self._bot_username = bot_username
        self.default_ttl = default_ttl
        self.clock = clock

    @property
    def bot_username(self) -> str:
        name = self._bot_username() if callable(self._bot_username) else self._bot_username
        if not name:
            raise RuntimeError("the bot's username is unknown: set BOT_USERNAME")
        return name

    async def create(self, workspace_id: str, *, via: str, workspace_name: str | None = None,
                     label: str | None = None, ttl: timedelta | None = None,
                     created_by: int | None = None, agent_language: str | None = None) -> NewLink:
        """A new single-use link for ``workspace_id``; ``created_by`` (an agent) gets the notifications,
        in ``agent_language`` (a locale code) when given."""
        workspace_id = (workspace_id or "").strip()
        if not WORKSPACE_ID.fullmatch(workspace_id) or might_carry_secret(workspace_id):
            raise HandoffError("bad_workspace", "workspace_id must be 2-64 letters, digits or _ . : -")
        label = _clean(label, MAX_LABEL, "bad_label", "label")
        name = _clean(workspace_name, MAX_WORKSPACE_NAME, "bad_name", "workspace_name")
        if name is None:
            name = await self.links.known_workspace_name(workspace_id)
        ttl = ttl if ttl is not None else self.default_ttl
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise HandoffError("bad_expiry", "expiry must be between 1 minute and 30 days")
        token = new_token()
        url = link_for(self.bot_username, token)
        expires_at = self.clock() + ttl
        link = await self.links.add(digest=digest_of(token), workspace_id=workspace_id, workspace_name=name,
                                    label=label, created_by=created_by, created_via=via, expires_at=expires_at,
                                    agent_language=agent_language)
        assert link.id is not None
        await self.audit.record("handoff.created", actor_user_id=created_by, link_id=link.id,
                                workspace_id=workspace_id, via=via, expires_at=expires_at.isoformat())
        return NewLink(link.id, url, workspace_id, name, label, expires_at, created_by)

    async def redeem(self, token: str, *, user_id: int, chat_id: int) -> Redemption:
        """Open a link as ``user_id``: the first user is bound to it, anyone else is refused."""
        if not _TOKEN_SHAPE.fullmatch(token or ""):
            return await self._audited(Redemption(RedemptionOutcome.UNKNOWN), user_id, chat_id)
        link = await self.links.by_digest(digest_of(token))
        for _ in range(2):
            if link is None:
                break
            now = self.clock()
            if link.revoked_at is not None:
                revoked = Redemption(RedemptionOutcome.REVOKED, link, was_bound=link.redeemed_by_user_id == user_id)
                return await self._audited(revoked, user_id, chat_id)
            if link.redeemed_by_user_id == user_id:
                return await self._audited(Redemption(RedemptionOutcome.REOPENED, link), user_id, chat_id)
            if link.redeemed_by_user_id is not None:
                return await self._audited(Redemption(RedemptionOutcome.USED, link), user_id, chat_id)
            if link.expires_at <= now:
                return await self._audited(Redemption(RedemptionOutcome.EXPIRED, link), user_id, chat_id)
            assert link.id is not None
            if await self.links.claim(link.id, user_id=user_id, chat_id=chat_id, at=now):
                bound = await self.links.get(link.id)
                return await self._audited(Redemption(RedemptionOutcome.REDEEMED, bound or link), user_id, chat_id)
            link = await self.links.get(link.id)  # someone else got there first: judge again
        return await self._audited(Redemption(RedemptionOutcome.UNKNOWN, link), user_id, chat_id)

    async def _audited(self, redemption: Redemption, user_id: int, chat_id: int) -> Redemption:
        kind = "handoff.redeemed" if redemption.accepted else "handoff.refused"
        link_id = redemption.link.id if redemption.link is not None else None
        await self.audit.record(kind, chat_id=chat_id, actor_user_id=user_id, outcome=redemption.outcome.value,
                                link_id=link_id)
        return redemption

    async def invitation_event(self, redemption: Redemption) -> ev.Event:
        """The event that tells the customer's state machine what happened."""
        link = redemption.link
        if not redemption.accepted or link is None:
            unbind = link.workspace_id if link is not None and redemption.was_bound else None
            return ev.InvitationRefused(redemption.outcome.value, unbind=unbind)
        connected = await self.links.workspace_connection(link.workspace_id)
        # Freshness counts from the first opening: reopening an old link later proves nothing new.
        opened = link.redeemed_at.replace(tzinfo=link.redeemed_at.tzinfo or UTC) if link.redeemed_at else None
        return ev.InvitationRedeemed(link.workspace_id, link.workspace_name, already_connected=connected is not None,
                                     connected_last_four=connected.last_four if connected else None,
                                     via="agent_link", bound_at=opened.timestamp() if opened else None)

    async def revoke(self, link_id: int, *, by: int | None, any_link: bool = False) -> HandoffLink | None:
        """Revoke a link (one's own, or any with ``any_link``); the revoked link, or None if not allowed."""
        link = await self.links.get(link_id)
        if link is None or link.revoked_at is not None or (not any_link and link.created_by != by):
            return None
        if not await self.links.revoke(link_id, by=by, at=self.clock()):
            return None
        await self.audit.record("handoff.revoked", actor_user_id=by, link_id=link_id,
                                workspace_id=link.workspace_id)
        return await self.links.get(link_id)

    async def open_links(self, created_by: int | None) -> list[HandoffLink]:
        """All of them: /links shows them in pages, so none is left out."""
        return await self.links.open_links(created_by, now=self.clock(), limit=None)
