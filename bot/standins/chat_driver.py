"""A simulated Telegram user, driving the Bot API stand-in's control API over HTTP.

Used by the try-it mode (a person at a terminal), the end-to-end tests and the benchmarks, so that all
three talk to the bot exactly the same way.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["ChatDriver", "plain_text"]

TAG = re.compile(r"<[^>]+>")
RETRY_AFTER = re.compile(r"^Too Many Requests: retry after (\d+)")


def plain_text(text: str) -> str:
    """Telegram HTML to terminal text."""
    return html.unescape(TAG.sub("", text or ""))


class ChatDriver:
    def __init__(self, telegram_url: str, user_id: int, *, first_name: str = "Ana", username: str | None = None,
                 chat_id: int | None = None, chat_type: str = "private", timeout: float = 10.0,
                 language_code: str | None = None) -> None:
        self.base = telegram_url.rstrip("/") + "/_sandbox"
        self.user_id = user_id
        self.chat_id = chat_id if chat_id is not None else user_id
        self.chat_type = chat_type
        self.first_name = first_name
        self.username = username
        self.language_code = language_code  # the Telegram app's language, sent with every message
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, **payload: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.base}/{path}", json=payload)
        response.raise_for_status()
        return dict(response.json())

    def _who(self) -> dict[str, Any]:
        who: dict[str, Any] = {"user_id": self.user_id, "chat_id": self.chat_id, "chat_type": self.chat_type,
                               "first_name": self.first_name}
        if self.username:
            who["username"] = self.username
        if self.language_code:
            who["language_code"] = self.language_code
        return who

    # -- acting ---------------------------------------------------------------------------------
    def send(self, text: str | None = None, **extra: Any) -> dict[str, Any]:
        """Send a message (text, or media with ``photo=True``, ``sticker=True``, ``caption=...`` ...)."""
        payload = {**self._who(), **extra}
        if text is not None:
            payload["text"] = text
        return self._post("send", **payload)

    def edit(self, message_id: int, text: str) -> dict[str, Any]:
        return self._post("edit", user_id=self.user_id, chat_id=self.chat_id, message_id=message_id, text=text)

    def press_data(self, message_id: int, data: str) -> dict[str, Any]:
        """Press a button by its raw callback data (also for forged data)."""
        return self._post("press", user_id=self.user_id, chat_id=self.chat_id, message_id=message_id, data=data)

    def press(self, label: str, message_id: int | None = None) -> dict[str, Any]:
        """Press the button whose label contains ``label`` on the guide message (or ``message_id``)."""
        message = self.message(message_id) if message_id else self.guide()
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if label.lower() in button["text"].lower() and "callback_data" in button:
                    return self.press_data(message["message_id"], button["callback_data"])
        raise LookupError(f"no button {label!r} on message {message['message_id']}: {self.labels(message)}")

    # -- observing ------------------------------------------------------------------------------
    def messages(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.base}/chats/{self.chat_id}/messages")
        response.raise_for_status()
        return list(response.json())

    def message(self, message_id: int) -> dict[str, Any]:
        for message in self.messages():
            if message["message_id"] == message_id:
                return message
        raise LookupError(f"no message {message_id}")

    def bot_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m.get("from_bot") and not m.get("deleted")]

    def last_id(self) -> int:
        """The newest message id in the chat (0 if none): a mark to wait for what comes after it.

        A mark by id, not by position: a fresh guide deletes the previous one, which shifts positions.
        """
        return max((int(m["message_id"]) for m in self.messages()), default=0)

    def bot_messages_after(self, message_id: int) -> list[dict[str, Any]]:
        """The bot's visible messages newer than ``message_id``."""
        return [m for m in self.bot_messages() if int(m["message_id"]) > message_id]

    def wait_text(self, contains: str, *, after: int = 0, timeout: float = 30.0) -> str:
        """The plain text of the first bot message newer than message ``after`` that contains ``contains``."""
        def found() -> str | None:
            return next((text for m in self.bot_messages_after(after)
                         if contains in (text := plain_text(m.get("text") or m.get("caption") or ""))), None)
        return str(self.wait_for(found, timeout, f"a message with {contains!r}"))

    def guide(self) -> dict[str, Any]:
        """The newest visible bot message with a keyboard (the guide), else the newest bot message."""
        visible = self.bot_messages()
        with_keyboard = [m for m in visible if (m.get("reply_markup") or {}).get("inline_keyboard")]
        if with_keyboard:
            return with_keyboard[-1]
        if visible:
            return visible[-1]
        raise LookupError("the bot has not said anything yet")

    @staticmethod
    def labels(message: dict[str, Any]) -> list[str]:
        return [b["text"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]

    def calls(self, method: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since": since}
        if method:
            params["method"] = method
        response = self.http.get(f"{self.base}/calls", params=params)
        response.raise_for_status()
        return list(response.json())

    def wait_bot_polling(self, timeout: float = 60.0) -> None:
        """Wait until the bot has started asking for updates (it is up and its handlers are wired)."""
        self.wait_for(lambda: self.calls("getUpdates") or self.calls("setWebhook"), timeout, "the bot to start")

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Poll until ``predicate()`` is truthy (lookups that raise count as not yet)."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
                if value:
                    return value
            except (LookupError, KeyError) as exc:
                last_error = exc
            time.sleep(0.02)
        seen = [(m["message_id"], plain_text(m.get("text") or "")[:60]) for m in self.messages()]
        raise TimeoutError(f"timed out waiting for {what}; last error: {last_error}; messages: {seen}")

    def wait_guide(self, contains: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the guide message's text contains ``contains``."""
        return dict(self.wait_for(lambda: (g := self.guide()) and contains.lower() in
                                  plain_text(g.get("text") or "").lower() and g, timeout, f"guide with {contains!r}"))

    def wait_idle(self, quiet: float = 0.4, timeout: float = 10.0) -> None:
        """Wait until the bot has made no Bot API call for ``quiet`` seconds.

        After a 429 the bot is rightly pausing for ``retry_after`` seconds (the stand-in's flood control
        is on by default), so the quiet period then starts only after that pause: a flood wait is not
        an idle bot.
        """
        deadline = time.monotonic() + timeout
        seen = self.calls()
        seq = seen[-1]["seq"] if seen else 0
        calm_since, needed = time.monotonic(), quiet
        while time.monotonic() < deadline:
            time.sleep(0.05)
            fresh = self.calls(since=seq)
            if fresh:
                seq, calm_since = fresh[-1]["seq"], time.monotonic()
                pauses = [int(found.group(1)) for call in fresh
                          if (found := RETRY_AFTER.search(call.get("description") or ""))]
                needed = quiet + max(pauses, default=0)
            elif time.monotonic() - calm_since >= needed:
                return
