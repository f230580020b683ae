"""Which languages the guide speaks, and how a Telegram ``language_code`` maps onto one of them.

Why one small table: adding a language is one content file plus one line in :data:`LOCALES`; the loader,
the /language buttons, the command menus and the tests all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LOCALE", "LOCALES", "LOCALE_CODES", "Locale", "is_rtl", "locale_for"]

DEFAULT_LOCALE = "en"


@dataclass(frozen=True, slots=True)
class Locale:
    """``code`` names ``flows/content/<code>.toml``; ``name`` is how the language calls itself (the button)."""

    code: str
    name: str
    babel: str  # the CLDR locale Babel uses for plurals and numbers
    menu: str  # the two-letter code setMyCommands takes (Bot API: ISO 639-1)
    aliases: tuple[str, ...] = ()  # other Telegram language_code prefixes that mean this locale
    rtl: bool = False


# Order = the order of the /language buttons.
LOCALES: tuple[Locale, ...] = (
    Locale("en", "English", "en", "en"),
    Locale("hi", "हिन्दी", "hi", "hi"),
    Locale("es", "Español", "es", "es"),
    Locale("pt-BR", "Português (Brasil)", "pt_BR", "pt", aliases=("pt",)),
    Locale("id", "Bahasa Indonesia", "id", "id", aliases=("in",)),
    Locale("ar", "العربية", "ar", "ar", rtl=True),
)
LOCALE_CODES: tuple[str, ...] = tuple(locale.code for locale in LOCALES)
_BY_CODE = {locale.code: locale for locale in LOCALES}
_BY_PREFIX = {prefix: locale for locale in LOCALES for prefix in (locale.code.split("-")[0].lower(),
                                                                   *locale.aliases)}


def locale_for(language_code: str | None) -> Locale:
    """The locale for a Telegram ``language_code`` (IETF tag, e.g. ``pt-br``, ``es-419``); English if unknown.

    Telegram sends the app's language, with or without a region (``es``, ``es-MX``, ``pt-br``); every region
    of a language we speak maps to that language (``pt-PT`` readers get Brazilian Portuguese, closer than
    English). Also accepts our own codes (``pt-BR``), so a stored choice maps onto itself.
    """
    if not language_code:
        return _BY_CODE[DEFAULT_LOCALE]
    exact = _BY_CODE.get(language_code)
    if exact is not None:
        return exact
    prefix = language_code.replace("_", "-").split("-")[0].lower()
    return _BY_PREFIX.get(prefix, _BY_CODE[DEFAULT_LOCALE])


def is_rtl(code: str) -> bool:
    return locale_for(code).rtl
