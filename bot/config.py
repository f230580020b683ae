"""One typed settings object, read from the environment and ``.env``, validated at start.

Why validate early: a missing or malformed encryption key must stop the process with a clear message
at start, not fail on the first paste an hour later.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.capabilities import DEFAULT_CAPABILITIES, parse_capabilities
from flows.machine import Policy
from flows.urls import button_url_problem
from flows.view import ViewSettings
from storage.db import DEFAULT_DATABASE_URL
from storage.sealing import KeyRing

__all__ = ["LOG_LEVELS", "Settings", "public_origin"]


# A `.env` file runs no commands: `FINGERPRINT_SECRET=$(python -c ...)` is that literal text, a secret
# anyone who read the README knows. Such values are refused at start (`onboarding-bot init` writes real ones).
_UNEXPANDED_SHELL = re.compile(r"\$\(|\$\{|`")
# BotFather's tokens: the bot's numeric id, a colon, then 35 URL-safe characters (shorter ones are refused
# here rather than by Telegram's 401 after start-up).
_BOT_TOKEN = re.compile(r"[1-9][0-9]{4,15}:[A-Za-z0-9_-]{30,64}")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
GuardLaneMode = Literal["process", "thread", "off"]


def _raw_text(value: object) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def _is_loopback(host: str) -> bool:
    """An address of this machine (127.0.0.0/8, ::1) or ``localhost``; ``127.attacker.example`` is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_origin(value: str) -> str:
    """PUBLIC_BASE_URL as a bare origin; plain http only for loopback (Telegram opens HTTPS Mini Apps only)."""
    parts = urlsplit(value.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("PUBLIC_BASE_URL must be an origin like https://bot.example.com")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError("PUBLIC_BASE_URL must use https:// (plain http is allowed for loopback hosts only)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("PUBLIC_BASE_URL must be an origin with an optional path, without query or credentials")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value

# The English defaults; left as they are, every locale says them in its own words (flows/content/*.toml).
DEFAULT_OPERATOR = "the DoubleTick support team"
DEFAULT_SUPPORT_CONTACT = "DoubleTick support"
DEFAULT_SUPPORT_URL = "https://web.doubletick.io"  # DoubleTick's app: a login page, not a contact


class Settings(BaseSettings):
    """Every option, with its environment variable name (case-insensitive) and default."""

    # hide_input_in_errors: a malformed secret must not be echoed in the start-up error.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      hide_input_in_errors=True, env_ignore_empty=True)

    telegram_bot_token: SecretStr | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    database_url: str = DEFAULT_DATABASE_URL

    openai_api_base_url: str = "https://api.openai.com/v1"
    openai_required_models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["gpt-4o-mini"])
    # What DoubleTick's agent calls on OpenAI (flows/capabilities.py): step 1.6 lists exactly the permissions
    # these need and verification proves each one, e.g. "models.read,chat.completions,responses".
    openai_required_capabilities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CAPABILITIES))
    openai_billed_probe: bool = True
    openai_probe_model: str = "gpt-4o-mini"
    openai_timeout_s: float = 10.0

    doubletick_api_base_url: str = "https://public.doubletick.io"
    doubletick_api_key: SecretStr | None = None
    doubletick_connect_path: str | None = None
    doubletick_timeout_s: float = 10.0

    # Insecure, for demos only (try mode, the sandbox): anyone may type any workspace id and connect a key to
    # a workspace nobody connected yet. Production uses agents' handoff links and signed self-serve links.
    insecure_demo_open_workspaces: bool = False
    open_mode: bool | None = None  # removed; set only to explain that at start
    # Verifies self-serve links minted by DoubleTick's dashboard (README "Self-serve links"); unset: refused.
    self_serve_link_secret: SecretStr | None = None
    key_encryption_keys: SecretStr | None = None
    fingerprint_secret: SecretStr | None = None
    outbox_hold_minutes: int = 15
    outbox_first_retry_s: float = 5.0
    outbox_poll_s: float = 1.0
    # A verifying/connecting step older than this lost its pipeline with a process; the user is told.
    # Keep it above the longest possible pipeline (OpenAI timeout + DoubleTick retries and waits).
    pipeline_timeout_s: float = 120.0

    operator_name: str = DEFAULT_OPERATOR
    support_url: str | None = DEFAULT_SUPPORT_URL
    support_contact: str = DEFAULT_SUPPORT_CONTACT
    privacy_contact: str | None = None  # shown by /privacy for questions and deletion requests
    openai_egress_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)  # for IP allowlists
    retention_days: int = 90
    # One gentle reminder for a customer who stopped mid-guide this many hours ago; 0 turns reminders off.
    reminder_after_hours: float = 24.0
    reminder_check_interval_s: float = 300.0
    key_submissions_per_user_per_hour: int = 5
    verifications_per_minute: int = 60
    # Keys this process keeps in memory while checks are busy (keys cannot be held); beyond: refused.
    verification_queue_per_process: int = 200
    log_level: str = "INFO"
    # Polling: receive updates and delete pasted keys apart from the main loop, so a busy bot never delays a
    # deletion: "process" (a child process: not even the GIL, bot/telegram/guard_process.py), "thread"
    # (bot/telegram/guard_lane.py; "true" means this) or "off" ("false": PTB's own updater, in the main loop).
    guard_lane: GuardLaneMode = "process"

    # Support agents: handoff links, agent commands, notifications (docs/support-agents.md).
    agent_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    admin_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    handoff_api_token: SecretStr | None = None  # bearer token of POST /api/handoffs; unset disables it
    handoff_link_ttl_hours: float = 72.0
    stuck_after_minutes: float = 30.0  # tell the agent when their customer sits at one step this long
    stuck_check_interval_s: float = 60.0
    bot_username: str | None = None  # for links made outside the bot (CLI, API); else asked with getMe

    # Webhook mode and replicas: `onboarding-bot run --webhook`, `onboarding-bot webhook set`.
    webhook_url: str | None = None  # the public HTTPS URL Telegram posts to (its path is served)
    webhook_secret_token: SecretStr | None = None  # checked on every webhook request
    webhook_listen: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    webhook_port: int = 8080
    # When Telegram hears 200: after the update is processed (a failure is redelivered by Telegram), or as
    # soon as the secret guard has deleted a pasted key (the update then waits in this process's queue).
    webhook_answer: Literal["after_processing", "after_guard"] = "after_processing"
    webhook_queue_max: int = 2000  # after_guard: more updates waiting than this are answered 503 (after the guard)
    # Set: the guard lane takes Telegram's POSTs on this port (bot/web/guard_intake.py) and answers once a pasted
    # key is deleted, whatever the main loop is busy with; WEBHOOK_PORT keeps the Mini App, API, probes, metrics.
    webhook_guard_port: int | None = None
    telegram_max_rate_per_s: float = 30.0  # the bot's whole outbound budget, shared by the replicas
    replicas: int = 1  # how many replicas share that budget (each takes 1/REPLICAS of it)
    # A flood wait longer than this is not waited out inside a handler: the saved step is shown after it.
    telegram_max_wait_s: float = 10.0
    # Deleting a pasted key is retried (flood waits honoured in full) this long before the user is told.
    telegram_delete_deadline_s: float = 60.0
    telegram_delete_notice_after_s: float = 3.0  # "deleting…" is said only if it takes longer than this
    # Past the deadline the deletion goes on in the background this long; the key waits unused meanwhile.
    telegram_delete_background_s: float = 600.0

    @field_validator("support_url")
    @classmethod
    def _button_url(cls, value: str | None) -> str | None:
        problem = button_url_problem(value) if value else None
        if problem:
            raise ValueError(f"becomes a Telegram button, so it {problem}")
        return value

    # Mini App key entry (docs/miniapp.md): the bot's public HTTPS origin; unset hides the Mini App.
    public_base_url: str | None = None
    miniapp_max_age_s: int = 3600  # initData older than this is refused (auth_date)
    miniapp_submissions_per_user_per_hour: int = 20  # POST /miniapp/api/key per Telegram user
    miniapp_requests_per_address_per_minute: int = 120  # every /miniapp/api request per client address

    @field_validator("*", mode="before")
    @classmethod
    def _no_unexpanded_shell(cls, value: object) -> object:
        text = _raw_text(value)
        if text is not None and _UNEXPANDED_SHELL.search(text):
            raise ValueError("looks like unexpanded shell (`$(...)`, `${...}` or backticks): .env runs no "
                             "commands; put the value itself (`onboarding-bot init` writes fresh secrets)")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _BOT_TOKEN.fullmatch(value.get_secret_value().strip()):
            raise ValueError("TELEGRAM_BOT_TOKEN does not look like a token from @BotFather (123456789:AA...)")
        return value

    @field_validator("guard_lane", mode="before")
    @classmethod
    def _lane_mode(cls, value: object) -> object:
        text = str(value).strip().lower()  # booleans from before there were three modes
        return {"true": "thread", "1": "thread", "yes": "thread", "on": "thread",
                "false": "off", "0": "off", "no": "off"}.get(text, text)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("openai_required_models", mode="before")
    @classmethod
    def _models(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("open_mode")
    @classmethod
    def _open_mode_removed(cls, value: bool | None) -> bool | None:
        if value is not None:
            raise ValueError("OPEN_MODE was removed: it let anyone take over any workspace. Give customers an "
                             "agent's handoff link or a signed self-serve link (SELF_SERVE_LINK_SECRET); for a "
                             "local demo only, INSECURE_DEMO_OPEN_WORKSPACES=true")
        return value

    @field_validator("self_serve_link_secret")
    @classmethod
    def _link_secret_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:  # signed_links.MIN_SECRET_LENGTH
            raise ValueError("SELF_SERVE_LINK_SECRET must be at least 32 characters "
                             "(generate one with `onboarding-bot link secret`)")
        return value

    @property
    def link_secret(self) -> bytes | None:
        """The self-serve link key as bytes (HMAC key), or None when self-serve links are off."""
        secret = self.self_serve_link_secret
        return secret.get_secret_value().encode("utf-8") if secret is not None else None


    @field_validator("openai_required_capabilities", mode="before")
    @classmethod
    def _capabilities_split(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("openai_required_capabilities")
    @classmethod
    def _capabilities_known(cls, value: list[str]) -> list[str]:
        return list(parse_capabilities(value))  # raises ValueError naming the unknown ones

    @field_validator("telegram_api_base_url", "openai_api_base_url", "doubletick_api_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("agent_user_ids", "admin_user_ids", "openai_egress_ips", mode="before")
    @classmethod
    def _user_ids(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("handoff_api_token")
    @classmethod
    def _handoff_token_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("HANDOFF_API_TOKEN must be at least 16 characters (32 random bytes recommended)")
        return value

    @field_validator("bot_username")
    @classmethod
    def _bare_username(cls, value: str | None) -> str | None:
        return value.strip().lstrip("@") or None if value else None

    @field_validator("handoff_link_ttl_hours", "stuck_after_minutes", "stuck_check_interval_s")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("webhook_secret_token")
    @classmethod
    def _secret_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram allows 1-256 characters; fewer than 32 can be guessed (issue 10: one character passed)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{32,256}", value.get_secret_value()):
            raise ValueError("WEBHOOK_SECRET_TOKEN must be 32-256 characters of A-Z, a-z, 0-9, _ and - "
                             "(make one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\")")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        return public_origin(value) if value else None

    @field_validator("miniapp_max_age_s", "miniapp_submissions_per_user_per_hour",
                     "miniapp_requests_per_address_per_minute")
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @property
    def miniapp_url(self) -> str | None:
        """The Mini App's page, or None when PUBLIC_BASE_URL is unset."""
        return f"{self.public_base_url}/miniapp/key" if self.public_base_url else None

    @field_validator("reminder_after_hours")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be 0 (off) or more")
        return value

    @field_validator("telegram_max_rate_per_s", "replicas", "telegram_delete_deadline_s",
                     "telegram_delete_background_s",
                     "reminder_check_interval_s")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @property
    def telegram_rate_per_replica(self) -> float:
        """This replica's share of the outbound budget (the rate limiter is per process)."""
        return self.telegram_max_rate_per_s / self.replicas

    @field_validator("key_encryption_keys")
    @classmethod
    def _keyring_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            KeyRing.from_spec(value.get_secret_value())  # raises InvalidKeyRing with a safe message
        return value

    @field_validator("fingerprint_secret")
    @classmethod
    def _fingerprint_secret_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("FINGERPRINT_SECRET must be at least 16 characters (32 random bytes recommended)")
        return value

    def keyring(self) -> KeyRing:
        """The key-encryption keys; the bot refuses to start without them."""
        if self.key_encryption_keys is None:
            raise SystemExit("KEY_ENCRYPTION_KEYS is not set: generate one with `onboarding-bot keys generate`.")
        return KeyRing.from_spec(self.key_encryption_keys.get_secret_value())

    @property
    def auto_connect(self) -> bool:
        return bool(self.doubletick_connect_path and self.doubletick_api_key)

    @cached_property
    def policy(self) -> Policy:
        demo = self.insecure_demo_open_workspaces
        return Policy(auto_connect=self.auto_connect, asks_workspace=demo and self.auto_connect,
                      can_hold=self.key_encryption_keys is not None,
                      hold_timeout_s=self.outbox_hold_minutes * 60.0 + 60.0,
                      # a key queued for a busy check waits sealed for at most half the hold (none: in memory)
                      queue_hold_s=self.outbox_hold_minutes * 30.0 if self.key_encryption_keys is not None else 0.0,
                      requires_invitation=not demo, pipeline_timeout_s=self.pipeline_timeout_s,
                      # the slow deletion's whole window, plus a pipeline's worth of margin
                      deleting_timeout_s=self.telegram_delete_deadline_s + self.telegram_delete_background_s
                      + self.pipeline_timeout_s)

    @property
    def privacy_contact_shown(self) -> str | None:
        """Where /privacy sends questions and deletion requests: PRIVACY_CONTACT, else the support the operator
        set (SUPPORT_CONTACT, then SUPPORT_URL). None when there is none but the defaults: they name DoubleTick's
        support in general and its app's login page, where nobody can send a deletion request (issue 11)."""
        if self.privacy_contact:
            return self.privacy_contact
        if self.support_contact != DEFAULT_SUPPORT_CONTACT:
            return self.support_contact
        if self.support_url and self.support_url.rstrip("/") != DEFAULT_SUPPORT_URL:
            return self.support_url
        return None

    def startup_warnings(self) -> list[str]:
        """What an operator should fix before customers arrive, logged at start (never in local demos)."""
        if self.insecure_demo_open_workspaces:  # try mode, the sandbox
            return []
        warnings = []
        if self.privacy_contact_shown is None:
            warnings.append("PRIVACY_CONTACT is not set (nor SUPPORT_CONTACT or SUPPORT_URL): /privacy can only "
                            "point customers to /cancel, /disconnect and their DoubleTick agent for questions "
                            "and deletion requests; set PRIVACY_CONTACT to an e-mail address or @handle")
        return warnings

    def view_settings(self) -> ViewSettings:
        """What texts say about this deployment. The English defaults of OPERATOR_NAME and SUPPORT_CONTACT
        mean "say it in the user's language" (each locale's ``[texts]``); any other value is a name, shown
        as it is. The probe note comes from the locale too."""
        return ViewSettings(operator=None if self.operator_name == DEFAULT_OPERATOR else self.operator_name,
                            billed_probe=self.openai_billed_probe,
                            capabilities=tuple(self.openai_required_capabilities),
                            privacy_contact=self.privacy_contact_shown, egress_ips=tuple(self.openai_egress_ips),
                            hold_minutes=self.outbox_hold_minutes, retention_days=self.retention_days,
                            requires_link=self.policy.requires_invitation,
                            support_url=self.support_url,
                            support_contact=None if self.support_contact == DEFAULT_SUPPORT_CONTACT
                            else self.support_contact,
                            # Telegram opens only HTTPS Mini Apps: a loopback http origin serves the page
                            # for local browsers, without a button in the chat.
                            miniapp_url=self.miniapp_url if self.public_base_url and
                            self.public_base_url.startswith("https://") else None)

    def secrets_to_redact(self) -> list[str]:
        """Configured secrets that must never appear in a log line."""
        values = [self.telegram_bot_token, self.doubletick_api_key, self.key_encryption_keys,
                  self.fingerprint_secret, self.webhook_secret_token, self.handoff_api_token,
                  self.self_serve_link_secret]
        out: list[str] = []
        for secret in values:
            if secret is not None:
                raw = secret.get_secret_value()
                out.append(raw)
                out.extend(part.split(":", 1)[-1] for part in raw.split(",") if ":" in part)
        return [v for v in out if len(v) >= 8]
