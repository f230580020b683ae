"""The baseline: a bare python-telegram-bot echo bot, run as its own process on the same harness.

Why: a throughput figure means little alone. This bot does the least a PTB bot can do for the same
update mix (echo a text, answer a button press), over the same transport, against the same stand-in,
with the same PTB concurrency and connection-pool settings as ours, so the ratio between the two is
what our handlers, database and guide cost.

Run: ``python -m bot.bench.echo_bot`` with ``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_API_BASE_URL`` set;
with ``ECHO_WEBHOOK_PORT`` set it serves a webhook (Starlette + uvicorn, processing each update before
answering, like ``onboarding-bot run --webhook``) instead of polling.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from telegram import Update
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

__all__ = ["build_echo_bot", "main"]

# The same knobs as bot.telegram.application.build_bot, so only the handlers differ.
MAX_CONCURRENT_UPDATES = 512
CONNECTION_POOL_SIZE = 128
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER]


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the text back."""
    message = update.effective_message
    if message is not None and message.text is not None:
        await context.bot.send_message(message.chat_id, message.text)


async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer the button press."""
    if update.callback_query is not None:
        await update.callback_query.answer()


def build_echo_bot(token: str, base_url: str, *, polling: bool = True) -> Application:
    builder = (ApplicationBuilder().token(token).base_url(f"{base_url}/bot").base_file_url(f"{base_url}/file/bot")
               .concurrent_updates(MAX_CONCURRENT_UPDATES).connection_pool_size(CONNECTION_POOL_SIZE))
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.add_handler(CallbackQueryHandler(answer))
    return application


def _serve_webhook(application: Application, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def telegram(request: Request) -> Response:
        update = Update.de_json(await request.json(), application.bot)
        await application.process_update(update)
        return Response()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with application:
            await application.start()
            yield
            await application.stop()

    app = Starlette(routes=[Route("/telegram", telegram, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    token = os.environ["TELEGRAM_BOT_TOKEN"]
    base_url = os.environ["TELEGRAM_API_BASE_URL"].rstrip("/")
    port = os.environ.get("ECHO_WEBHOOK_PORT")
    application = build_echo_bot(token, base_url, polling=port is None)
    if port is None:
        application.run_polling(allowed_updates=ALLOWED_UPDATES)
    else:
        asyncio.set_event_loop(asyncio.new_event_loop())
        _serve_webhook(application, int(port))


if __name__ == "__main__":
    main()
