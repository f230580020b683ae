"""A secret API key as a value that refuses to print itself.

Why: the plaintext must never reach logs, tracebacks, bot messages or the database. Making the key a
type whose ``repr``/``str``/``format`` show only a mask turns an accidental ``log.info(key)`` into a
harmless ``sk-proj-…abcd``. The one way to get the plaintext is :meth:`SecretKey.reveal`, called only
where an HTTP ``Authorization`` header is built or a sealed outbox row is written.
"""

from __future__ import annotations

__all__ = ["SecretKey", "mask_key"]


def mask_key(text: str) -> str:
    """Mask a key-like string as ``<prefix>…<last4>`` (prefix up to the second dash, at most 8)."""
    if len(text) <= 12:
        return "…" + text[-2:] if len(text) > 4 else "…"
    head = text[:8]
    dash = text.find("-", 3)
    if 0 < dash < 8:
        head = text[: dash + 1]
    return f"{head}…{text[-4:]}"


class SecretKey:
    """An API key held in memory only; prints as a mask, compares in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError("a secret key must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """Return the plaintext. Call only where the key leaves the process on purpose."""
        return self._value

    @property
    def last_four(self) -> str:
        return self._value[-4:]

    @property
    def first_eight(self) -> str:
        return self._value[:8]

    @property
    def masked(self) -> str:
        return mask_key(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretKey({self.masked!r})"

    def __str__(self) -> str:
        return self.masked

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __eq__(self, other: object) -> bool:
        import hmac

        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretKey", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretKey cannot be pickled")

    def __getstate__(self) -> None:
        raise TypeError("SecretKey cannot be serialised")
