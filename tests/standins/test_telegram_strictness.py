"""Catalogue: the Telegram stand-in is at least as strict as api.telegram.org, one test per rule.

Each test asserts the exact answer body (``error_code``, ``description``, ``parameters``) the real Bot
API server gives, read over raw HTTP so nothing in between rewrites it; a few also check that PTB
turns it into the exception a bot will catch (``RetryAfter``, ``ChatMigrated``). Sources are cited in
the stand-in modules (``telegram_flood``, ``telegram_links``, ``telegram_methods``, ``telegram_text``).

Time is a settable clock passed to ``FakeTelegram(clock=...)``: flood control and callback-query age
are deterministic, no test sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from telegram import Bot
from telegram.error import ChatMigrated, RetryAfter

from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
USER = 5151
GROUP = -4242
HOURS = 3600.0
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class Clock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram(clock=clock)
    with BackgroundServer(create_telegram_app(fake)) as running:
        yield fake, running.url


@pytest.fixture
def fake(server: tuple[FakeTelegram, str], clock: Clock) -> FakeTelegram:
    server[0].reset()
    clock.advance(3600)  # every bucket full again
    return server[0]


@pytest.fixture
async def api(server: tuple[FakeTelegram, str], fake: FakeTelegram) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[1], trust_env=False) as client:
        assert (await client.post(f"/bot{TOKEN}/getMe")).json()["ok"]  # the bot exists before users write
        yield client


@pytest.fixture
async def bot(server: tuple[FakeTelegram, str], fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=f"{server[1]}/bot") as real_bot:
        yield real_bot


async def call(api: httpx.AsyncClient, method: str, **params: Any) -> dict[str, Any]:
    """One raw Bot API call; the JSON body, with the HTTP status checked against ``error_code``."""
    response = await api.post(f"/bot{TOKEN}/{method}", json=params)
    body: dict[str, Any] = response.json()
    assert response.status_code == (200 if body["ok"] else body["error_code"])
    return body


def error(code: int, description: str, **parameters: int) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def too_many(retry_after: int) -> dict[str, Any]:
    return error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


async def bot_message(api: httpx.AsyncClient, chat_id: int, text: str = "hello", **extra: Any) -> int:
    body = await call(api, "sendMessage", chat_id=chat_id, text=text, **extra)
    assert body["ok"], body
    return int(body["result"]["message_id"])


# --- flood control (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits) --------------------------


async def test_a_short_burst_in_one_chat_passes_then_sustained_sends_get_429(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    fake.send(USER, "hi")
    for n in range(10):  # the burst allowance
        await bot_message(api, USER, f"burst {n}")
    assert await call(api, "sendMessage", chat_id=USER, text="one too many") == too_many(1)
    clock.advance(1.0)  # one message per second is the sustained rate
    await bot_message(api, USER, "after a second")
    assert await call(api, "sendMessage", chat_id=USER, text="again too soon") == too_many(1)
    assert [c["ok"] for c in fake.calls(method="sendMessage")].count(False) == 2


async def test_one_message_per_second_forever_never_sees_a_429(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    fake.send(USER, "hi")
    for n in range(60):
        await bot_message(api, USER, f"tick {n}")
        clock.advance(1.0)


async def test_flood_control_counts_edits_and_deletes_too(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    pasted = fake.send(USER, "sk-proj-pretend")
    shown = await bot_message(api, USER, "Step 1")
    for n in range(9):
        assert (await call(api, "editMessageText", chat_id=USER, message_id=shown, text=f"Step {n + 2}"))["ok"]
    edit = await call(api, "editMessageText", chat_id=USER, message_id=shown, text="Step 99")
    assert edit == too_many(1)
    delete = await call(api, "deleteMessage", chat_id=USER, message_id=pasted["message_id"])
    assert delete == too_many(1)
    clock.advance(1.0)
    assert await call(api, "deleteMessage", chat_id=USER, message_id=pasted["message_id"]) == \
        {"ok": True, "result": True}


async def test_ptb_reads_the_429_as_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    for n in range(10):
        await bot.send_message(USER, f"burst {n}")
    with pytest.raises(RetryAfter) as flood:
        await bot.send_chat_action(USER, "typing")  # any chat method, not only sends
    waited = flood.value.retry_after
    assert (waited if isinstance(waited, int | float) else waited.total_seconds()) == 1


async def test_a_group_takes_twenty_messages_a_minute(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    fake.send(USER, "hi", chat_id=GROUP, chat_type="group")
    fake.send(USER, "hi")
    verdicts: list[dict[str, Any]] = []
    for second in range(40):  # one message a second: fine in a private chat, too much for a group
        verdicts.append(await call(api, "sendMessage", chat_id=GROUP, text=f"group {second}"))
        assert (await call(api, "sendMessage", chat_id=USER, text=f"private {second}"))["ok"]
        clock.advance(1.0)
    first_refusal = next(i for i, v in enumerate(verdicts) if not v["ok"])
    assert first_refusal == 29  # a burst of 20, refilled at 1/3 per second, spent at 1 per second
    assert verdicts[first_refusal] == too_many(1)
    assert sum(v["ok"] for v in verdicts) == 20 + 39 // 3  # over 39 s: the burst plus 20 a minute
    refusals = {v["parameters"]["retry_after"] for v in verdicts if not v["ok"]}
    assert refusals <= {1, 2, 3}  # never more than one token's time at 20 a minute


async def test_the_bot_as_a_whole_takes_about_thirty_messages_a_second(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    users = [USER + n for n in range(40)]
    for user in users:
        fake.send(user, "hi")
    verdicts = [await call(api, "sendMessage", chat_id=user, text="broadcast") for user in users]
    assert [v["ok"] for v in verdicts] == [True] * 30 + [False] * 10
    assert verdicts[30] == too_many(1)
    answer = await call(api, "answerCallbackQuery", callback_query_id="1")  # bot-wide: counted too
    assert answer == too_many(1)
    clock.advance(1.0)
    assert all([(await call(api, "sendMessage", chat_id=u, text="next second"))["ok"] for u in users[30:]])


async def test_flood_control_can_be_turned_off_through_the_control_api(
    fake: FakeTelegram, api: httpx.AsyncClient
) -> None:
    fake.send(USER, "hi")
    changed = await api.post("/_sandbox/config", json={"flood_control": False})
    assert changed.status_code == 200 and changed.json()["flood_control"] is False
    for n in range(50):
        await bot_message(api, USER, f"unlimited {n}")
    fake.reset()  # a reset restores the strict default
    fake.send(USER, "hi")
    for n in range(10):
        await bot_message(api, USER, f"limited {n}")
    assert await call(api, "sendMessage", chat_id=USER, text="x") == too_many(1)


# --- edits ------------------------------------------------------------------------------------------------


async def test_an_identical_edit_is_not_modified(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    fake.send(USER, "hi")
    markup = {"inline_keyboard": [[{"text": "Next", "callback_data": "next"}]]}
    shown = await bot_message(api, USER, "<b>Step</b> one", parse_mode="HTML", reply_markup=markup)
    same = await call(api, "editMessageText", chat_id=USER, message_id=shown, text="<b>Step</b> one",
                      parse_mode="HTML", reply_markup=markup)
    assert same == error(400, NOT_MODIFIED)
    same_markup = await call(api, "editMessageReplyMarkup", chat_id=USER, message_id=shown, reply_markup=markup)
    assert same_markup == error(400, NOT_MODIFIED)
    other_entities = await call(api, "editMessageText", chat_id=USER, message_id=shown, text="Step one",
                                reply_markup=markup)
    assert other_entities["ok"]  # same characters without bold is a different content


async def test_messages_that_cannot_be_edited_or_are_missing(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    theirs = fake.send(USER, "the user's own message")
    users = await call(api, "editMessageText", chat_id=USER, message_id=theirs["message_id"], text="x")
    assert users == error(400, "Bad Request: message can't be edited")
    missing = await call(api, "editMessageText", chat_id=USER, message_id=999, text="x")
    assert missing == error(400, "Bad Request: message to edit not found")
    shown = await bot_message(api, USER)
    await call(api, "deleteMessage", chat_id=USER, message_id=shown)
    gone = await call(api, "editMessageText", chat_id=USER, message_id=shown, text="x")
    assert gone == error(400, "Bad Request: message to edit not found")


# --- deletes ----------------------------------------------------------------------------------------------


async def test_deleting_twice_or_a_missing_message_is_not_found(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    pasted = fake.send(USER, "sk-proj-pretend")
    assert (await call(api, "deleteMessage", chat_id=USER, message_id=pasted["message_id"]))["ok"]
    again = await call(api, "deleteMessage", chat_id=USER, message_id=pasted["message_id"])
    assert again == error(400, "Bad Request: message to delete not found")
    assert await call(api, "deleteMessage", chat_id=USER, message_id=777) == \
        error(400, "Bad Request: message to delete not found")


async def test_messages_older_than_48_hours_cannot_be_deleted(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    old = fake.send(USER, "pasted two days ago")
    own = await bot_message(api, USER, "the bot's own, also old")
    fake.age_message(USER, old["message_id"], 48 * HOURS + 1)
    fake.age_message(USER, own, 48 * HOURS + 1)
    for message_id in (old["message_id"], own):
        assert await call(api, "deleteMessage", chat_id=USER, message_id=message_id) == \
            error(400, "Bad Request: message can't be deleted")
    fresh = fake.send(USER, "pasted 47 hours ago")
    fake.age_message(USER, fresh["message_id"], 47 * HOURS)
    assert (await call(api, "deleteMessage", chat_id=USER, message_id=fresh["message_id"]))["ok"]


async def test_a_users_message_in_a_group_needs_admin_rights(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    theirs = fake.send(USER, "sk-in-a-group", chat_id=GROUP, chat_type="group")
    refused = await call(api, "deleteMessage", chat_id=GROUP, message_id=theirs["message_id"])
    assert refused == error(400, "Bad Request: message can't be deleted")


# --- lengths (https://core.telegram.org/bots/api#sendmessage, #sendphoto) ---------------------------------


async def test_text_is_limited_to_4096_characters_after_entity_parsing(
    fake: FakeTelegram, api: httpx.AsyncClient
) -> None:
    fake.send(USER, "hi")
    too_long = await call(api, "sendMessage", chat_id=USER, text="x" * 4097)
    assert too_long == error(400, "Bad Request: message is too long")
    tagged = await call(api, "sendMessage", chat_id=USER, text="<b>" + "é" * 4096 + "</b>", parse_mode="HTML")
    assert tagged["ok"] and len(tagged["result"]["text"]) == 4096  # tags do not count, characters do
    shown = int(tagged["result"]["message_id"])
    longer = await call(api, "editMessageText", chat_id=USER, message_id=shown, text="&amp;" * 4097,
                        parse_mode="HTML")
    assert longer == error(400, "Bad Request: message is too long")
    assert await call(api, "sendMessage", chat_id=USER, text="  ") == error(400, "Bad Request: message text is empty")


async def test_captions_are_limited_to_1024_characters(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    fake.send(USER, "hi")
    files = {"document": ("notes.txt", b"plain text", "text/plain")}
    too_long = await api.post(f"/bot{TOKEN}/sendDocument", data={"chat_id": str(USER), "caption": "c" * 1025},
                              files=files)
    assert too_long.status_code == 400
    assert too_long.json() == error(400, "Bad Request: message caption is too long")
    fits = await api.post(f"/bot{TOKEN}/sendDocument", data={"chat_id": str(USER), "caption": "c" * 1024},
                          files=files)
    assert fits.json()["ok"]


# --- button URLs (telegram_links: TDLib's check_link) ----------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("http://localhost:8080/help", "Wrong HTTP URL"),
    ("support", "Wrong HTTP URL"),
    ("https://intranet/help", "Wrong HTTP URL"),
    ("mailto:help@example.com", "Unsupported URL protocol"),
    ("ftp://example.com/file", "Unsupported URL protocol"),
    ("https://example.com:99999/", "Wrong port number specified in the URL"),
    ("https://exa mple.com/", "Wrong URL host"),
    ("https:///path", "URL host is empty"),
])
async def test_a_button_url_telegram_refuses_fails_the_whole_message(
    fake: FakeTelegram, api: httpx.AsyncClient, url: str, reason: str
) -> None:
    fake.send(USER, "hi")
    markup = {"inline_keyboard": [[{"text": "Support", "url": url}]]}
    refused = await call(api, "sendMessage", chat_id=USER, text="Need help?", reply_markup=markup)
    assert refused == error(400, f"Bad Request: inline keyboard button URL '{url}' is invalid: {reason}")
    assert [m for m in fake.messages(USER) if m["from_bot"]] == []


@pytest.mark.parametrize(("url", "stored"), [
    ("https://help.example.com/support", "https://help.example.com/support"),
    ("https://example.com", "https://example.com/"),
    ("example.com/help", "http://example.com/help"),
    ("HTTP://Example.COM/Path", "http://example.com/Path"),
    ("tg://resolve?domain=doubletick_support", "tg://resolve?domain=doubletick_support"),
])
async def test_accepted_button_urls_come_back_normalised(
    fake: FakeTelegram, api: httpx.AsyncClient, url: str, stored: str
) -> None:
    fake.send(USER, "hi")
    markup = {"inline_keyboard": [[{"text": "Support", "url": url}]]}
    sent = await call(api, "sendMessage", chat_id=USER, text="Need help?", reply_markup=markup)
    assert sent["ok"] and sent["result"]["reply_markup"]["inline_keyboard"][0][0]["url"] == stored


async def test_web_app_buttons_need_https(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    fake.send(USER, "hi")
    markup = {"inline_keyboard": [[{"text": "Open", "web_app": {"url": "http://app.example.com"}}]]}
    refused = await call(api, "sendMessage", chat_id=USER, text="Form", reply_markup=markup)
    assert refused == error(400, "Bad Request: inline keyboard button Web App URL 'http://app.example.com' is "
                                 "invalid: Only HTTPS links are allowed")


# --- callback queries -------------------------------------------------------------------------------------


async def test_a_callback_answer_after_15_seconds_is_too_old(
    fake: FakeTelegram, api: httpx.AsyncClient, clock: Clock
) -> None:
    fake.send(USER, "hi")
    shown = await bot_message(api, USER, "Pick", reply_markup={"inline_keyboard": [[{"text": "A",
                                                                                      "callback_data": "a"}]]})
    late = fake.press(USER, shown, "a")
    in_time = fake.press(USER, shown, "a")
    clock.advance(14.9)
    assert await call(api, "answerCallbackQuery", callback_query_id=in_time["callback_query_id"]) == \
        {"ok": True, "result": True}
    clock.advance(0.2)
    assert await call(api, "answerCallbackQuery", callback_query_id=late["callback_query_id"]) == \
        error(400, QUERY_TOO_OLD)
    assert await call(api, "answerCallbackQuery", callback_query_id=in_time["callback_query_id"]) == \
        error(400, QUERY_TOO_OLD)  # a second answer is refused the same way


# --- blocked users ----------------------------------------------------------------------------------------


async def test_a_user_who_blocked_the_bot_gets_nothing(fake: FakeTelegram, api: httpx.AsyncClient) -> None:
    fake.send(USER, "hi")
    shown = await bot_message(api, USER, "Step 1")
    fake.block(USER)
    blocked = error(403, "Forbidden: bot was blocked by the user")
    assert await call(api, "sendMessage", chat_id=USER, text="still there?") == blocked
    assert await call(api, "editMessageText", chat_id=USER, message_id=shown, text="Step 2") == blocked
    assert await call(api, "sendChatAction", chat_id=USER, action="typing") == blocked


# --- group -> supergroup migration ------------------------------------------------------------------------


async def test_writing_to_an_upgraded_group_names_the_supergroup(
    fake: FakeTelegram, api: httpx.AsyncClient, bot: Bot
) -> None:
    said = fake.send(USER, "hello group", chat_id=GROUP, chat_type="group")
    await bot.get_updates(offset=said["update_id"] + 1)  # confirm what came before the upgrade
    migrated = await api.post("/_sandbox/migrate", json={"chat_id": GROUP, "user_id": USER})
    assert migrated.status_code == 200
    new_id = migrated.json()["migrate_to_chat_id"]
    assert str(new_id).startswith("-100")
    upgraded = error(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=new_id)
    assert await call(api, "sendMessage", chat_id=GROUP, text="anyone?") == upgraded
    assert await call(api, "deleteMessage", chat_id=GROUP, message_id=said["message_id"]) == upgraded
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(GROUP, "via PTB")
    assert caught.value.new_chat_id == new_id
    assert (await call(api, "getChat", chat_id=GROUP))["result"]["type"] == "group"  # reading still works
    notes = await bot.get_updates(offset=said["update_id"] + 1)
    assert [(u.message.chat.id, u.message.migrate_to_chat_id, u.message.migrate_from_chat_id) for u in notes] == \
        [(GROUP, new_id, None), (new_id, None, GROUP)]
    assert (await call(api, "sendMessage", chat_id=new_id, text="here now"))["ok"]
    again = await api.post("/_sandbox/migrate", json={"chat_id": GROUP, "user_id": USER})
    assert again.status_code == 409
