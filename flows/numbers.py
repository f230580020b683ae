"""Numbers, durations and plural forms from CLDR (via Babel), and bidi isolation for right-to-left text.

Why CLDR and not ``if n == 1``: Hindi, Arabic and the rest have their own plural rules (Arabic has six
forms), and CLDR already knows them. Why isolates: in an Arabic sentence, an English label, a key ending
such as ``…abcd``, a number or a URL is a left-to-right island; wrapping it in Unicode isolates keeps the
bidi algorithm from reordering it with its neighbours.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from babel import Locale as BabelLocale
from babel.lists import format_list
from babel.numbers import format_decimal
from babel.units import format_unit

from flows.locales import locale_for

__all__ = [
    "FSI",
    "LRI",
    "PDI",
    "count",
    "duration",
    "isolate",
    "join_list",
    "number",
    "plural_categories",
    "plural_category",
]

FSI = "\u2068"  # FIRST STRONG ISOLATE: direction from the value's own first strong character
LRI = "\u2066"  # LEFT-TO-RIGHT ISOLATE
PDI = "\u2069"  # POP DIRECTIONAL ISOLATE


@cache
def _babel(code: str) -> BabelLocale:
    return BabelLocale.parse(locale_for(code).babel)


def plural_category(code: str, n: int) -> str:
    """CLDR plural category of ``n`` in this locale: ``zero``, ``one``, ``two``, ``few``, ``many`` or ``other``."""
    return str(_babel(code).plural_form(abs(n)))


def plural_categories(code: str) -> frozenset[str]:
    """Every category the locale's integer counts can fall into (what a ``[plurals]`` entry must cover)."""
    return frozenset({plural_category(code, n) for n in range(0, 1001)})


def number(code: str, n: int | float) -> str:
    return format_decimal(n, locale=_babel(code))


def duration(code: str, n: int, unit: str) -> str:
    """``5 minutes``, ``1 minute``, ``5 मिनट``, ``دقيقة واحدة``: CLDR's long unit pattern (``unit``: second,
    minute, hour, day)."""
    return str(format_unit(n, f"duration-{unit}", length="long", locale=_babel(code)))


def count(code: str, forms: Mapping[str, object], n: int) -> str:
    """Pick the plural form for ``n`` from a ``{category: template}`` table and fill ``{n}`` in."""
    category = plural_category(code, n)
    template = forms.get(category, forms.get("other"))
    if template is None:
        raise KeyError(f"plural form {category!r} missing")
    return str(template).format(n=number(code, n))


def join_list(code: str, items: list[str]) -> str:
    """"A, B and C" in the locale's words (CLDR list patterns): "A, B y C", "A، B و C"."""
    return str(format_list(items, style="standard", locale=_babel(code))) if items else ""


def isolate(text: str, code: str) -> str:
    """Wrap a value in FSI…PDI in a right-to-left locale (no-op elsewhere, and for empty values)."""
    if not text or not locale_for(code).rtl:
        return text
    return f"{FSI}{text}{PDI}"
