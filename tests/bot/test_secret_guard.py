"""The secret guard reads every field a user can type into, in every update type (issue 10, item 4).

Each case is a Bot API update (shapes from https://core.telegram.org/bots/api#update and the objects it
links) with a key in one field; before issue 10 the guard read only text, caption and document name of
``message``/``edited_message``, so every case but those failed. The guard's verdict is checked through
:class:`SecretGuard` with a recording messenger: what matters is which message it deletes.
"""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from telegram import Update

from bot.core.ports import DeleteOutcome
from bot.telegram.secret_guard import SecretGuard, data_carries_secret

ALNUM = string.ascii_letters + string.digits
USER = {"id": 42, "is_bot": False, "first_name": "Ann"}
BOT = {"id": 7, "is_bot": True, "first_name": "Guide", "username": "guide_bot"}
CHAT = {"id": 42, "type": "private", "first_name": "Ann"}


def key(seed: int = 0) -> str:
    rng = random.Random(seed)
    half = lambda: "".join(rng.choice(ALNUM) for _ in range(74))  # noqa: E731
    return "sk-proj-" + half() + "T3Blbk" + "FJ" + half()


def message(**fields: Any) -> dict[str, Any]:
    return {"message_id": 10, "date": 1_700_000_000, "chat": CHAT, "from": USER, **fields}


def poll(**fields: Any) -> dict[str, Any]:
    return {"id": "1", "question": "q", "options": [], "total_voter_count": 0, "is_closed": False,
            "is_anonymous": True, "type": "regular", "allows_multiple_answers": False, "allows_revoting": False,
            "members_only": False, **fields}


def link_entity(url: str) -> dict[str, Any]:
    return {"type": "text_link", "offset": 0, "length": 5, "url": url}


K = key()
SPLIT = "\u2063".join(K[i : i + 5] for i in range(0, len(K), 5))
SPACED = " ".join(K[i : i + 25] for i in range(0, len(K), 25))

# update field -> message (or object) with the key in one place
CASES: dict[str, dict[str, Any]] = {
    "text": {"message": message(text=K)},
    "text split by U+2063": {"message": message(text=SPLIT)},
    "text split by U+2066": {"message": message(text="\u2066".join(K))},
    "text spaced every 25": {"message": message(text=f"here: {SPACED}")},
    "text struck through (U+0336)": {"message": message(text="".join(c + "\u0336" for c in K))},
    "text underlined (U+0332), first 30": {"message": message(text="".join(c + "\u0332" for c in K[:30]) + K[30:])},
    "text split by dots": {"message": message(text=".".join(K[i : i + 6] for i in range(0, len(K), 6)))},
    "text split by emoji": {"message": message(text="\U0001f511".join(K[i : i + 9] for i in range(0, len(K), 9)))},
    "caption accented (U+0301)": {"message": message(photo=[], caption="".join(c + "\u0301" for c in K))},
    "caption": {"message": message(photo=[], caption=K)},
    "text_link url": {"message": message(text="click", entities=[link_entity(f"https://x.example/?k={K}")])},
    "caption text_link url": {"message": message(photo=[], caption="click",
                                                 caption_entities=[link_entity(f"https://x.example/{K}")])},
    "contact": {"message": message(contact={"phone_number": "+100", "first_name": "k", "vcard": f"NOTE:{K}"})},
    "contact name": {"message": message(contact={"phone_number": "+100", "first_name": K})},
    "venue": {"message": message(venue={"location": {"latitude": 1.0, "longitude": 2.0}, "title": K,
                                        "address": "x"})},
    "venue address": {"message": message(venue={"location": {"latitude": 1.0, "longitude": 2.0}, "title": "x",
                                                "address": SPLIT})},
    "poll question": {"message": message(poll=poll(question=K))},
    "poll option": {"message": message(poll=poll(options=[{"text": K, "voter_count": 0, "persistent_id": "o1"}]))},
    "quote": {"message": message(text="this", quote={"text": K, "position": 0})},
    "reply_to_message": {"message": message(text="see above", reply_to_message=message(message_id=9, text=K))},
    "external_reply": {"message": message(text="see", external_reply={
        "origin": {"type": "hidden_user", "sender_user_name": "x", "date": 1},
        "contact": {"phone_number": "+1", "first_name": K}})},
    "web_app_data": {"message": message(web_app_data={"data": K, "button_text": "send"})},
    "business_message": {"business_message": message(text=K, business_connection_id="bc1")},
    "edited_business_message": {"edited_business_message": message(text=SPLIT, edit_date=1_700_000_100,
                                                                   business_connection_id="bc1")},
    "edited_message": {"edited_message": message(text=SPACED, edit_date=1_700_000_100)},
    "channel_post": {"channel_post": {"message_id": 10, "date": 1, "text": K,
                                      "chat": {"id": -100, "type": "channel", "title": "c"}}},
    "document named id_rsa": {"message": message(document={"file_id": "f", "file_unique_id": "u",
                                                           "file_name": "id_rsa"})},
    "document named .npmrc": {"message": message(document={"file_id": "f", "file_unique_id": "u",
                                                            "file_name": ".npmrc"})},
    "document named config.yaml": {"message": message(document={"file_id": "f", "file_unique_id": "u",
                                                                "file_name": "config.yaml"})},
    "unknown future field": {"message": message(text="hi", checklist={"title": K, "tasks": []})},
}


class RecordingMessenger:
    """Stands in for the Messenger's deleteMessage: records what the guard deletes."""

    def __init__(self) -> None:
        self.deleted: list[tuple[int, int]] = []

    async def delete(self, chat_id: int, message_id: int, *, language: str = "en") -> DeleteOutcome:
        self.deleted.append((chat_id, message_id))
        return DeleteOutcome.DELETED


def update(fields: dict[str, Any]) -> Update:
    parsed = Update.de_json({"update_id": 1, **fields}, None)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("name", list(CASES))
async def test_a_key_in_any_user_field_is_deleted(name: str) -> None:
    messenger = RecordingMessenger()
    guard = SecretGuard(messenger)  # type: ignore[arg-type]
    parsed = update(CASES[name])
    await guard.check(parsed)
    own = parsed.effective_message
    assert own is not None
    assert (own.chat_id, own.message_id) in messenger.deleted
    assert guard.verdict_for(parsed) is not None


async def test_the_quoted_old_message_holding_the_key_is_deleted_too() -> None:
    messenger = RecordingMessenger()
    parsed = update(CASES["reply_to_message"])
    await SecretGuard(messenger).check(parsed)  # type: ignore[arg-type]
    assert messenger.deleted == [(42, 10), (42, 9)]


ORDINARY: dict[str, dict[str, Any]] = {
    "chat": {"message": message(text="Hello! Where do I find my key? — thanks 🙂")},
    "photo": {"message": message(photo=[{"file_id": "AgACAgIAAxkBAAIBY2Xq" + "x" * 60, "file_unique_id": "AQAD" * 4,
                                         "width": 90, "height": 90}])},
    "document": {"message": message(document={"file_id": "BQACAgIAAxkBAAIBZGXq" + "y" * 60,
                                              "file_unique_id": "AgAD" * 4, "file_name": "invoice.pdf"})},
    "reply to the bot's masked key": {"message": message(text="yes", reply_to_message=message(
        message_id=9, text="Connected sk-proj-…abcd", **{"from": BOT}), quote={"text": "sk-proj-…abcd",
                                                                                "position": 10})},
    "button under a bot message": {"callback_query": {"id": "1", "from": USER, "chat_instance": "-1" * 20,
                                                      "data": "paste:help", "message": message(
                                                          text="Paste your sk-proj-… key", **{"from": BOT})}},
    "long username": {"message": message(text="hi", **{"from": {**USER, "username": "a" * 32}})},
}


@pytest.mark.parametrize("name", list(ORDINARY))
async def test_ordinary_updates_are_left_alone(name: str) -> None:
    messenger = RecordingMessenger()
    await SecretGuard(messenger).check(update(ORDINARY[name]))  # type: ignore[arg-type]
    assert messenger.deleted == []


def test_callback_data_holding_a_key_is_seen_though_nothing_can_be_deleted() -> None:
    data = {"update_id": 1, "callback_query": {"id": "1", "from": USER, "chat_instance": "1", "data": K[:60]}}
    assert data_carries_secret(data)
