"""Find a secret in bytes the system wrote: as plaintext, as a long piece of it, or encoded.

Why encodings: a key rarely leaks verbatim in a place nobody looked; it leaks inside a base64 blob (a
pickled object, a JWT-ish cookie, an HTTP basic-auth header), as hex (a bytes repr, a hash input dumped
for debugging) or URL-encoded (a query string). Base64 depends on where the secret starts inside the
encoded data, so each of the three alignments is searched, minus the characters shared with neighbours.
Any 12-character fragment of the plaintext counts (a key cut in two by a line wrap or a truncated log
field, a "masked" form that shows too much), and so does a fragment split by separators: Unicode format
characters (U+200B, U+2063, U+2066 ...), spaces, line breaks, and their ``\\u2063``/``\\n`` escapes in
reprs and JSON. Fragments are looked up in a set of every window of every secret, so one pass over the
data's runs of key characters finds them all.

Findings name the secret only by its mask, so a failing test does not print the canary.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from flows.secret import mask_key

__all__ = ["CompanionWatcher", "Leak", "collapse_separators", "encoded_forms", "find_in_bytes", "find_in_calls",
           "find_in_tree", "fragments", "sqlite_files"]

WINDOW = 12  # a piece of a key this long never appears legitimately (masks show at most 8 + 4)
_RUN_RE = re.compile(rb"[A-Za-z0-9_\-+/=.:~]{%d,}" % WINDOW)
# what splits a key without changing what a reader recovers: format characters (category Cf and other
# invisibles), whitespace of any kind, combining marks, and the escapes a repr or JSON writes for them
_SEPARATOR_RE = re.compile(
    "[\\s\u00ad\u034f\u061c\u115f\u1160\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f"
    "\ufeff\uffa0\U000e0000-\U000e007f"
    # combining marks drawn on a key's characters (U+0336 strike-through, U+0332 underline, accents)
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
    r"|\\+(?:u(?:00a0|00ad|034f|061c|180e|200[b-f]|202[a-f]|20[2-6][0-9a-f]|3000|feff|fe0[0-9a-f]"
    r"|03[0-6][0-9a-f]|20[d-f][0-9a-f])"
    r"|x(?:a0|ad|85)|[nrtvf])"
)


@dataclass(frozen=True, slots=True)
class Leak:
    where: str
    secret: str  # masked
    form: str

    def __str__(self) -> str:
        return f"{self.secret} as {self.form} in {self.where}"


def encoded_forms(secret: str) -> dict[str, bytes]:
    """Needles for ``secret``: plaintext, hex, URL-encoded, base64 and base64url at every alignment."""
    raw = secret.encode()
    forms: dict[str, bytes] = {
        "plaintext": raw,
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
    }
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw)
            # Drop the first group (it mixes in the bytes before the secret) and the last (the bytes after).
            forms[f"{name}@{shift}"] = encoded[4 if shift else 0 : -4].rstrip(b"=")
    return forms


def fragments(secret: str) -> dict[bytes, int]:
    """Every window of ``WINDOW`` characters of ``secret`` -> where it starts."""
    raw = secret.encode()
    return {raw[start : start + WINDOW]: start for start in range(max(1, len(raw) - WINDOW + 1))}


def collapse_separators(data: bytes) -> bytes:
    """``data`` with format characters, whitespace and their escapes removed (a key spaced out or split
    by U+2063 becomes whole again)."""
    text = data.decode("utf-8", "replace")
    return _SEPARATOR_RE.sub("", text).encode("utf-8", "replace")


def _fragment_leaks(data: bytes, secrets: list[str], where: str) -> list[Leak]:
    """A leak for each secret with a fragment in ``data`` as is, and one if only split by separators."""
    index: dict[bytes, tuple[int, int]] = {}
    for number, secret in enumerate(secrets):
        for window, start in fragments(secret).items():
            index.setdefault(window, (number, start))
    leaks: list[Leak] = []
    for form, haystack in (("fragment", data), ("split fragment", collapse_separators(data))):
        found: dict[int, int] = {}
        for run in _RUN_RE.finditer(haystack):
            piece = run.group()
            for offset in range(len(piece) - WINDOW + 1):
                hit = index.get(piece[offset : offset + WINDOW])
                if hit is not None and hit[0] not in found:
                    found[hit[0]] = hit[1]
        for number, start in found.items():
            if form == "split fragment" and any(leak.secret == mask_key(secrets[number]) for leak in leaks):
                continue  # already found whole: one finding is enough
            leaks.append(Leak(where, mask_key(secrets[number]), f"{form}[{start}:{start + WINDOW}]"))
    return leaks


def _needles(secrets: Iterable[str]) -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for secret in secrets:
        for form, needle in encoded_forms(secret).items():
            out.append((mask_key(secret), form, needle))
    return out


def find_in_bytes(data: bytes, secrets: Iterable[str], where: str) -> list[Leak]:
    """Every (secret, form) found in ``data``; one finding per secret and form, plus fragments."""
    values = list(secrets)
    found = [Leak(where, masked, form) for masked, form, needle in _needles(values) if needle in data]
    return found + _fragment_leaks(data, values, where)


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def find_in_tree(root: Path, secrets: Iterable[str]) -> list[Leak]:
    """Scan every file under ``root`` (database, WAL, journal, logs, anything else written there)."""
    values = list(secrets)
    needles = _needles(values)
    leaks: list[Leak] = []
    for path in _files(root):
        data = path.read_bytes()
        where = str(path.relative_to(root))
        leaks += [Leak(where, masked, form) for masked, form, needle in needles if needle in data]
        leaks += _fragment_leaks(data, values, where)
    return leaks


def find_in_calls(calls: list[dict[str, Any]], secrets: Iterable[str]) -> list[Leak]:
    """Scan the parameters of every recorded outbound Bot API call (JSON as sent, and as text)."""
    values = list(secrets)
    leaks: list[Leak] = []
    for call in calls:
        params = call.get("params") or {}
        blob = (json.dumps(params, ensure_ascii=False) + "\n" + json.dumps(params)).encode()
        leaks += find_in_bytes(blob, values, f"Bot API call #{call.get('seq')} {call.get('method')}")
    return leaks


def sqlite_files(database: Path) -> list[Path]:
    """The database file and its companions that exist now (-wal, -shm, -journal)."""
    candidates = [database] + [database.with_name(database.name + suffix) for suffix in COMPANIONS]
    return [path for path in candidates if path.exists()]


COMPANIONS = ("-wal", "-shm", "-journal")


class CompanionWatcher:
    """Copies SQLite's -wal/-shm/-journal files whenever they change, for scanning later.

    Why: with one connection per session SQLite checkpoints and removes the WAL when the last connection
    closes, so at the end of a run there is usually no WAL left to look at; the pages that passed through
    it are caught here while they exist.
    """

    def __init__(self, database: Path, interval_s: float = 0.02, budget_bytes: int = 64 * 2**20) -> None:
        self.database = database
        self.interval_s = interval_s
        self.budget_bytes = budget_bytes
        self.snapshots: list[tuple[str, bytes]] = []
        self._seen: set[tuple[str, int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-companion-watcher", daemon=True)

    def __enter__(self) -> CompanionWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def used_bytes(self) -> int:
        return sum(len(data) for _, data in self.snapshots)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for suffix in COMPANIONS:
                path = self.database.with_name(self.database.name + suffix)
                try:
                    stat = path.stat()
                    marker = (suffix, stat.st_size, stat.st_mtime_ns)
                    if marker in self._seen or stat.st_size == 0 or self.used_bytes > self.budget_bytes:
                        continue
                    data = path.read_bytes()
                except OSError:  # gone between the stat and the read: SQLite removed it
                    continue
                self._seen.add(marker)
                self.snapshots.append((f"{path.name} (copied while the bot ran)", data))

    def find(self, secrets: Iterable[str]) -> list[Leak]:
        values = list(secrets)
        return [leak for where, data in self.snapshots for leak in find_in_bytes(data, values, where)]
