"""Convert a pure :class:`flows.view.View` into PTB's inline keyboard objects."""

from __future__ import annotations

from telegram import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup, WebAppInfo

from flows.view import Button, View

__all__ = ["to_markup"]


def _button(button: Button) -> InlineKeyboardButton:
    if button.url:
        return InlineKeyboardButton(button.label, url=button.url)
    if button.web_app:
        return InlineKeyboardButton(button.label, web_app=WebAppInfo(button.web_app))
    if button.copy_text:
        return InlineKeyboardButton(button.label, copy_text=CopyTextButton(button.copy_text))
    return InlineKeyboardButton(button.label, callback_data=button.callback)


def to_markup(view: View) -> InlineKeyboardMarkup | None:
    if not view.rows:
        return None
    return InlineKeyboardMarkup([[_button(b) for b in row] for row in view.rows])
