"""Settings for a real ``build_bot`` pointed at the stand-ins, with fresh secrets each time."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from storage.sealing import generate_key_spec


def sandbox_settings(url: str, folder: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": SANDBOX_BOT_TOKEN, "telegram_api_base_url": url,
        "database_url": f"sqlite+aiosqlite:///{folder / 'bot.db'}",
        "fingerprint_secret": secrets.token_urlsafe(32), "key_encryption_keys": generate_key_spec(),
        **extra}
    return Settings(**values)
