"""initData as Telegram gives it to a Mini App opened from an inline button, signed with the bot's token.

Why in the stand-ins: Telegram computes initData, not the bot; the tests and the bench play Telegram's
part with the documented algorithm (https://core.telegram.org/bots/webapps#validating-data-received-via-
the-mini-app, via :func:`bot.web.initdata.sign_init_data`), fields as an inline-button launch has them.
"""

from __future__ import annotations

import json
import time

from bot.standins.sandbox import SANDBOX_BOT_TOKEN
from bot.web.initdata import sign_init_data

__all__ = ["launch_init_data"]


def launch_init_data(user_id: int, *, token: str = SANDBOX_BOT_TOKEN, age_s: float = 5.0, language: str = "en",
                     **extra: str) -> str:
    """The initData of a Mini App that ``user_id`` opened from an inline button ``age_s`` seconds ago."""
    profile = {"id": user_id, "first_name": "Ana", "username": f"user{user_id}", "language_code": language}
    fields = {"query_id": f"AAH{user_id}q{time.time_ns()}", "user": json.dumps(profile, separators=(",", ":")),
              "auth_date": str(int(time.time() - age_s)), "chat_instance": "-5000", "chat_type": "private",
              "signature": "c2lnbmF0dXJlLWZvci10ZXN0cw", **extra}
    return sign_init_data(fields, token)
