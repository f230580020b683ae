"""The Telegram Bot API stand-in behaves like api.telegram.org for a real PTB ``Bot``.

Every test drives the stand-in with python-telegram-bot itself (so PTB's own parsing is part of the
check) and plays the user's side through ``FakeTelegram`` or the ``/_sandbox/`` control API.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes

from bot.standins.server import BackgroundServer
from bot.standins.telegram import FakeTelegram, create_telegram_app

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
USER = 4242
GROUP = -100777
HOURS = 3600


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    with BackgroundServer(create_telegram_app(fake)) as running:
        yield fake, running.url


@pytest.fixture
def fake(server: tuple[FakeTelegram, str]) -> FakeTelegram:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeTelegram, str], fake: FakeTelegram) -> str:
    return server[1]


@pytest.fixture
async def bot(url: str) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=f"{url}/bot") as real_bot:  # initialize() calls getMe
        yield real_bot


@pytest.fixture
async def control(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        yield client


class Receiver:
    """A webhook endpoint that records what Telegram posts and can fail on demand."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_texts: dict[str, int] = {}  # text -> how many more times to answer 500
        self.in_flight: dict[int, int] = {}
        self.max_parallel = 0
        self.max_parallel_same_chat = 0

    async def endpoint(self, request: Request) -> Response:
        body = await request.json()
        message = body.get("message") or {}
        chat_id = message.get("chat", {}).get("id", 0)
        self.in_flight[chat_id] = self.in_flight.get(chat_id, 0) + 1
        self.max_parallel = max(self.max_parallel, sum(self.in_flight.values()))
        self.max_parallel_same_chat = max(self.max_parallel_same_chat, self.in_flight[chat_id])
        self.received.append({"update": body, "at": time.monotonic(),
                              "secret": request.headers.get("x-telegram-bot-api-secret-token"),
                              "content_type": request.headers.get("content-type")})
        await asyncio.sleep(0.05)
        self.in_flight[chat_id] -= 1
        text = message.get("text", "")
        if self.fail_texts.get(text, 0) > 0:
            self.fail_texts[text] -= 1
            return Response("boom", status_code=500)
        return Response("")


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[list[Receiver], str]]:
    current: list[Receiver] = [Receiver()]

    async def hook(request: Request) -> Response:
        return await current[0].endpoint(request)

    with BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as running:
        yield current, f"{running.url}/hook"


@pytest.fixture
def receiver(receiver_server: tuple[list[Receiver], str]) -> Receiver:
    receiver_server[0][0] = Receiver()
    return receiver_server[0][0]


def png(width: int, height: int) -> bytes:
    """A valid PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


async def fails(call: Awaitable[Any], kind: type[TelegramError] = BadRequest) -> str:
    """Await a Bot API call that must fail with ``kind``; return PTB's message, lower-cased."""
    with pytest.raises(kind) as caught:
        await call
    return caught.value.message.lower()


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    rows = [[InlineKeyboardButton(label, callback_data=data)] for label, data in buttons]
    return InlineKeyboardMarkup(rows)


def message(fake: FakeTelegram, chat_id: int, message_id: int) -> dict[str, Any]:
    return next(m for m in fake.messages(chat_id) if m["message_id"] == message_id)


# --- identity and the envelope ----------------------------------------------------------------------


async def test_get_me_reports_the_tokens_bot_id_and_configured_username(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456789, "DoubleTickOnboardingBot", True)


async def test_unknown_token_and_unknown_method_get_the_real_error_bodies(
    url: str, control: httpx.AsyncClient
) -> None:
    short = await control.post("/bot123:short/getMe")
    assert short.status_code == 401
    assert short.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    missing = await control.post(f"/bot{TOKEN}/sendTelepathy")
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    with pytest.raises(InvalidToken):
        async with Bot("123:short", base_url=f"{url}/bot"):
            pass


async def test_only_configured_tokens_are_accepted(url: str) -> None:
    other = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
    strict = FakeTelegram(tokens=[other], bot_username="OtherBot")
    with BackgroundServer(create_telegram_app(strict)) as running:
        async with Bot(other, base_url=f"{running.url}/bot") as allowed:
            assert allowed.username == "OtherBot"
        with pytest.raises(InvalidToken):
            await Bot(TOKEN, base_url=f"{running.url}/bot").get_me()


# --- messages -----------------------------------------------------------------------------------------


async def test_user_command_arrives_with_bot_command_entity_and_complete_objects(
    fake: FakeTelegram, bot: Bot
) -> None:
    sent = fake.send(USER, "/start ref_abc", first_name="Asha", username="asha", language_code="pt-br")
    (update,) = await bot.get_updates()
    incoming = update.message
    assert update.update_id == sent["update_id"] and incoming.message_id == sent["message_id"]
    assert incoming.chat.id == USER and incoming.chat.type == "private"
    assert (incoming.from_user.first_name, incoming.from_user.language_code) == ("Asha", "pt-br")
    assert [(e.type, e.offset, e.length) for e in incoming.entities] == [("bot_command", 0, 6)]


async def test_send_edit_delete_roundtrip_is_visible_in_the_chat_log(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    sent = await bot.send_message(USER, "<b>Step 1</b> open https://platform.openai.com", parse_mode="HTML",
                                  reply_markup=keyboard(("Done", "step:1")), protect_content=True,
                                  link_preview_options=LinkPreviewOptions(is_disabled=True))
    assert sent.message_id == 2  # one counter for both sides of a private chat
    assert sent.text == "Step 1 open https://platform.openai.com"
    assert [e.type for e in sent.entities] == ["bold", "url"]
    edited = await bot.edit_message_text("Step 2", chat_id=USER, message_id=sent.message_id)
    assert edited.text == "Step 2" and edited.edit_date is not None and edited.reply_markup is None
    assert await bot.delete_message(USER, sent.message_id) is True
    log = message(fake, USER, sent.message_id)
    assert log["edits"] == 1 and log["protect_content"] and log["link_preview_disabled"]
    assert log["deleted"] and log["deleted_at_monotonic"] <= time.monotonic()


async def test_identical_edit_is_not_modified_and_foreign_or_missing_messages_fail(
    fake: FakeTelegram, bot: Bot
) -> None:
    mine = fake.send(USER, "my key")
    sent = await bot.send_message(USER, "Pick one", reply_markup=keyboard(("A", "a")))
    same = bot.edit_message_text("Pick one", chat_id=USER, message_id=sent.message_id,
                                 reply_markup=keyboard(("A", "a")))
    assert (await fails(same)).startswith("message is not modified: specified new message content and reply")
    users = bot.edit_message_text("x", chat_id=USER, message_id=mine["message_id"])
    assert await fails(users) == "message can't be edited"
    unknown = bot.edit_message_text("x", chat_id=USER, message_id=999)
    assert await fails(unknown) == "message to edit not found"
    assert message(fake, USER, sent.message_id)["edits"] == 0


async def test_markup_errors_match_the_real_servers_wording(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    assert await fails(bot.send_message(USER, "<b>bold", parse_mode="HTML")) == (
        "can't parse entities: can't find end tag corresponding to start tag \"b\"")
    div = await fails(bot.send_message(USER, "hi <div>x</div>", parse_mode="HTML"))
    assert div == "can't parse entities: unsupported start tag \"div\" at byte offset 3"
    dot = await fails(bot.send_message(USER, "Done.", parse_mode="MarkdownV2"))
    assert dot == ("can't parse entities: character '.' is reserved and must be escaped with the "
                   "preceding '\\'")
    assert await fails(bot.send_message(USER, "x" * 4097)) == "message is too long"
    ok = await bot.send_message(USER, "<i>" + "x" * 4096 + "</i>", parse_mode="HTML")
    assert len(ok.text) == 4096  # the limit counts text after entity parsing


async def test_callback_data_is_limited_to_64_bytes_not_characters(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    ok = await bot.send_message(USER, "fits", reply_markup=keyboard(("ok", "d" * 64)))
    assert ok.reply_markup.inline_keyboard[0][0].callback_data == "d" * 64
    too_long = bot.send_message(USER, "too long", reply_markup=keyboard(("no", "é" * 33)))  # 66 bytes
    assert await fails(too_long) == "button_data_invalid"


# --- deletion rules (reference section 1) ---------------------------------------------------------------


async def test_private_chat_bot_deletes_users_message_once(fake: FakeTelegram, bot: Bot) -> None:
    pasted = fake.send(USER, "sk-proj-stand-in-not-a-key")
    assert await bot.delete_message(USER, pasted["message_id"]) is True
    assert await fails(bot.delete_message(USER, pasted["message_id"])) == "message to delete not found"
    assert await fails(bot.delete_message(USER, 12345)) == "message to delete not found"
    assert await fails(bot.delete_message(777, 1)) == "chat not found"


async def test_group_deletion_needs_admin_rights_except_for_own_messages(
    fake: FakeTelegram, bot: Bot
) -> None:
    theirs = fake.send(USER, "sk-in-a-group", chat_id=GROUP, chat_type="supergroup")
    own = await bot.send_message(GROUP, "Please DM me instead")
    assert await fails(bot.delete_message(GROUP, theirs["message_id"])) == "message can't be deleted"
    assert await bot.delete_message(GROUP, own.message_id) is True
    fake.configure_chat(GROUP, bot_can_delete=True)
    assert await bot.delete_message(GROUP, theirs["message_id"]) is True
    assert [m["deleted"] for m in fake.messages(GROUP)] == [True, True]


async def test_messages_older_than_48_hours_cannot_be_deleted(
    fake: FakeTelegram, bot: Bot, control: httpx.AsyncClient
) -> None:
    old = fake.send(USER, "old paste")
    recent = fake.send(USER, "recent paste")
    aged = await control.post("/_sandbox/age", json={"chat_id": USER, "message_id": old["message_id"],
                                                     "seconds": 48 * HOURS + 1})
    assert aged.status_code == 200
    fake.age_message(USER, recent["message_id"], 47 * HOURS)
    assert await fails(bot.delete_message(USER, old["message_id"])) == "message can't be deleted"
    assert await bot.delete_message(USER, recent["message_id"]) is True


async def test_delete_messages_skips_missing_ids_but_is_all_or_nothing(fake: FakeTelegram, bot: Bot) -> None:
    theirs = fake.send(USER, "a", chat_id=GROUP, chat_type="group")
    own = await bot.send_message(GROUP, "b")
    mixed = bot.delete_messages(GROUP, [own.message_id, theirs["message_id"]])
    assert await fails(mixed) == "message can't be deleted"
    assert not any(m["deleted"] for m in fake.messages(GROUP))
    assert await bot.delete_messages(GROUP, [own.message_id, 999]) is True
    assert [m["deleted"] for m in fake.messages(GROUP)] == [False, True]


# --- getUpdates ------------------------------------------------------------------------------------------


async def test_offset_confirms_updates_and_long_poll_returns_as_soon_as_one_arrives(
    fake: FakeTelegram, bot: Bot
) -> None:
    first = fake.send(USER, "one")
    (update,) = await bot.get_updates()
    assert [u.update_id for u in await bot.get_updates()] == [first["update_id"]]  # not yet confirmed
    waiting = asyncio.create_task(bot.get_updates(offset=update.update_id + 1, timeout=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    second = fake.send(USER, "two")
    (arrived,) = await asyncio.wait_for(waiting, 5)
    assert arrived.update_id == second["update_id"] == first["update_id"] + 1
    assert time.monotonic() - started < 1.0
    record = next(u for u in fake.updates() if u["update_id"] == second["update_id"])
    assert record["delivered"] and record["handed_over_monotonic"] >= started
    assert await bot.get_updates(offset=arrived.update_id + 1) == ()


async def test_a_second_long_poll_terminates_the_first_with_conflict(fake: FakeTelegram, url: str) -> None:
    async with Bot(TOKEN, base_url=f"{url}/bot") as one, Bot(TOKEN, base_url=f"{url}/bot") as two:
        first = asyncio.create_task(one.get_updates(timeout=10))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(two.get_updates(timeout=10))
        assert await fails(asyncio.wait_for(first, 5), Conflict) == (
            "conflict: terminated by other getupdates request; make sure that only one bot instance "
            "is running")
        sent = fake.send(USER, "hello")
        assert [u.update_id for u in await asyncio.wait_for(second, 5)] == [sent["update_id"]]


async def test_allowed_updates_filters_updates_created_afterwards(fake: FakeTelegram, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["callback_query"])
    dropped = fake.send(USER, "ignored")
    assert dropped["update_id"] is None
    await bot.get_updates(allowed_updates=[])  # empty list: back to the default set
    kept = fake.send(USER, "kept")
    assert [u.update_id for u in await bot.get_updates()] == [kept["update_id"]]


# --- webhooks --------------------------------------------------------------------------------------------


async def test_webhook_delivery_sends_secret_and_keeps_per_chat_order(
    fake: FakeTelegram, bot: Bot, receiver: Receiver, receiver_server: tuple[list[Receiver], str]
) -> None:
    assert await bot.set_webhook(receiver_server[1], secret_token="s3cret_-X", max_connections=10)
    assert "can't use getupdates method while webhook is active" in await fails(bot.get_updates(), Conflict)
    for n in range(3):
        fake.send(USER, f"a{n}")
        fake.send(USER + 1, f"b{n}")
    assert await fake.wait_until(lambda: all(u["confirmed"] for u in fake.updates()))
    texts = [r["update"]["message"]["text"] for r in receiver.received]
    assert [t for t in texts if t[0] == "a"] == ["a0", "a1", "a2"]
    assert [t for t in texts if t[0] == "b"] == ["b0", "b1", "b2"]
    parsed = Update.de_json(receiver.received[0]["update"], bot)  # PTB parses the pushed JSON as-is
    assert parsed.message is not None and parsed.message.text in ("a0", "b0")
    assert {r["secret"] for r in receiver.received} == {"s3cret_-X"}
    assert {r["content_type"] for r in receiver.received} == {"application/json"}
    assert receiver.max_parallel_same_chat == 1 and receiver.max_parallel >= 2
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.max_connections) == (receiver_server[1], 0, 10)


async def test_webhook_retries_a_500_then_drops_after_the_attempt_limit(
    fake: FakeTelegram, bot: Bot, receiver: Receiver, receiver_server: tuple[list[Receiver], str]
) -> None:
    fake.configure(webhook_max_attempts=3)
    receiver.fail_texts = {"flaky": 1, "poison": 99}
    await bot.set_webhook(receiver_server[1])
    flaky = fake.send(USER, "flaky")
    poison = fake.send(USER + 1, "poison")
    after = fake.send(USER + 1, "after poison")
    assert await fake.wait_until(lambda: all(u["confirmed"] or u["dropped"] for u in fake.updates()))
    states = {u["update_id"]: u for u in fake.updates()}
    flaky_hits = [r["at"] for r in receiver.received if r["update"]["message"]["text"] == "flaky"]
    assert len(flaky_hits) == 2 and flaky_hits[1] - flaky_hits[0] >= 0.2  # backoff starts at 0.2 s
    assert states[flaky["update_id"]]["attempts"] == 2 and states[flaky["update_id"]]["confirmed"]
    assert states[poison["update_id"]]["dropped"] and states[poison["update_id"]]["attempts"] == 3
    assert states[after["update_id"]]["confirmed"]  # the head-of-line block ends with the drop
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"


async def test_webhook_secret_token_is_validated(fake: FakeTelegram, bot: Bot) -> None:
    dotted = bot.set_webhook("http://127.0.0.1:9/hook", secret_token="not.allowed")
    assert await fails(dotted) == "secret token contains unallowed characters"
    assert (await bot.get_webhook_info()).url == ""


# --- callback queries ------------------------------------------------------------------------------------


async def test_press_button_delivers_the_full_message_and_answering_twice_fails(
    fake: FakeTelegram, bot: Bot, control: httpx.AsyncClient
) -> None:
    fake.send(USER, "/start")
    shown = await bot.send_message(USER, "Ready?", reply_markup=keyboard(("Yes, continue", "go:1")))
    pressed = await control.post("/_sandbox/press_button", json={"user_id": USER, "text": "Yes, continue"})
    assert pressed.status_code == 200
    missing = await control.post("/_sandbox/press_button", json={"user_id": USER, "text": "Nope"})
    assert missing.status_code == 404 and "Nope" in missing.json()["error"]
    query = (await bot.get_updates())[-1].callback_query
    assert query.id == pressed.json()["callback_query_id"] and query.data == "go:1"
    assert query.message.message_id == shown.message_id and query.message.text == "Ready?"
    assert await query.answer("Saved") is True
    assert "query is too old and response timeout expired or query id" in await fails(query.answer())


async def test_forged_and_expired_callback_queries(fake: FakeTelegram, bot: Bot) -> None:
    fake.configure(callback_answer_timeout_s=0.2)
    forged = fake.press(USER, message_id=404, data="admin:grant")
    (update,) = await bot.get_updates()
    assert update.callback_query.data == "admin:grant"
    assert update.callback_query.message.is_accessible is False  # InaccessibleMessage, date 0
    await asyncio.sleep(0.3)
    assert "query is too old" in await fails(bot.answer_callback_query(forged["callback_query_id"]))


# --- limits and faults -----------------------------------------------------------------------------------


async def test_fail_next_injects_one_error(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    fake.fail_next("deleteMessage", 502, "Bad Gateway")
    assert await fails(bot.delete_message(USER, 1), NetworkError) == "bad gateway"
    assert await bot.delete_message(USER, 1) is True


# --- uploads, commands, control API -------------------------------------------------------------------


async def test_send_photo_multipart_is_decoded_and_checked(fake: FakeTelegram, bot: Bot) -> None:
    fake.send(USER, "hi")
    image = png(40, 30)
    sent = await bot.send_photo(USER, image, caption="<b>Scan</b> me", parse_mode="HTML", filename="qr.png")
    assert sent.caption == "Scan me" and (sent.photo[-1].width, sent.photo[-1].height) == (40, 30)
    call = fake.calls(method="sendPhoto")[-1]
    assert call["params"]["photo"]["length"] == len(image) and call["params"]["chat_id"] == USER
    log = message(fake, USER, sent.message_id)
    assert log["photo"] and log["upload_length"] == len(image) and log["upload_is_image"]
    not_image = bot.send_photo(USER, b"definitely not an image", filename="x.png")
    assert await fails(not_image) == "image_process_failed"
    again = await bot.send_photo(USER, sent.photo[-1].file_id)  # a known file_id is reusable
    assert again.photo[-1].file_id == sent.photo[-1].file_id


async def test_commands_are_validated_and_stored_per_scope_and_language(fake: FakeTelegram, bot: Bot) -> None:
    assert await fails(bot.set_my_commands([BotCommand("Start", "Begin")])) == "bot_command_invalid"
    await bot.set_my_commands([BotCommand("start", "Begin"), BotCommand("privacy", "Privacy policy")])
    await bot.set_my_commands([BotCommand("start", "Começar")], language_code="pt")
    assert [c.command for c in await bot.get_my_commands()] == ["start", "privacy"]
    assert [c.description for c in await bot.get_my_commands(language_code="pt")] == ["Começar"]
    assert await bot.delete_my_commands() is True and await bot.get_my_commands() == ()


async def test_sandbox_wait_returns_as_soon_as_the_bot_acts_in_that_chat(
    fake: FakeTelegram, bot: Bot, control: httpx.AsyncClient
) -> None:
    fake.send(USER, "hi")
    fake.send(USER + 1, "hello")
    seq = fake.calls()[-1]["seq"]
    empty = await control.get("/_sandbox/wait", params={"chat_id": USER, "after_seq": seq, "timeout": 0.2})
    assert empty.status_code == 200 and empty.json() == []
    waiting = asyncio.create_task(control.get("/_sandbox/wait", params={"chat_id": USER, "after_seq": seq,
                                                                        "timeout": 5}))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await bot.send_message(USER + 1, "someone else")  # a different chat does not wake the waiter
    await bot.send_message(USER, "reply")
    calls = (await waiting).json()
    assert time.monotonic() - started < 1.0
    assert [(c["method"], c["chat_id"], c["ok"]) for c in calls] == [("sendMessage", USER, True)]


async def test_control_api_send_edit_and_reset(
    fake: FakeTelegram, bot: Bot, control: httpx.AsyncClient
) -> None:
    sent = (await control.post("/_sandbox/send", json={"user_id": USER, "text": "sk-proj-typo"})).json()
    edited = (await control.post("/_sandbox/edit", json={"user_id": USER, "message_id": sent["message_id"],
                                                         "text": "sk-proj-fixed"})).json()
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [sent["update_id"], edited["update_id"]]
    assert updates[1].edited_message.text == "sk-proj-fixed" and updates[1].edited_message.edit_date
    bad = await control.post("/_sandbox/send", json={"user_id": USER, "txt": "typo in field"})
    assert bad.status_code == 400 and "txt" in bad.json()["error"]
    assert (await control.post("/_sandbox/reset")).status_code == 200
    assert fake.calls() == [] and (await control.get(f"/_sandbox/chats/{USER}/messages")).json() == []


async def test_a_ptb_application_runs_unmodified_against_the_stand_in(fake: FakeTelegram, url: str) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"Welcome! args={context.args}")

    app = Application.builder().token(TOKEN).base_url(f"{url}/bot").build()
    app.add_handler(CommandHandler("start", start))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        fake.send(USER, "/start ref42")
        replies = await fake.wait_for_calls(USER, 0, within_s=5, method="sendMessage")
        await app.updater.stop()
        await app.stop()
    assert replies and replies[0]["ok"] and replies[0]["params"]["text"] == "Welcome! args=['ref42']"
