"""Find a secret in bytes the system wrote: as plaintext, as a long piece of it, or encoded.

Why encodings: a key rarely leaks verbatim in a place nobody looked; it leaks inside a base64 blob (a
pickled object, a JWT-ish cookie, an HTTP basic-auth header), as hex (a bytes repr, a hash input dumped
for debugging) or URL-encoded (a query string). Base64 depends on where the secret starts inside the
encoded data, so each of the three alignments is searched, minus the characters shared with neighbours.
A long window of the plaintext catches a key cut in two (a line wrap, a truncated log field).

Findings name the secret only by its mask, so a failing test does not print the canary.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from flows.secret import mask_key

__all__ = ["CompanionWatcher", "Leak", "encoded_forms", "find_in_bytes", "find_in_calls", "find_in_tree",
           "sqlite_files"]

WINDOW = 24  # a piece of a key this long never appears legitimately (masks show at most 8 + 4)


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
    for start in range(0, max(1, len(raw) - WINDOW + 1), WINDOW // 2):
        forms[f"piece[{start}:{start + WINDOW}]"] = raw[start : start + WINDOW]
    return forms


def _needles(secrets: Iterable[str]) -> list[tuple[str, str, bytes]]:
    out: list[tuple[str, str, bytes]] = []
    for secret in secrets:
        for form, needle in encoded_forms(secret).items():
            out.append((mask_key(secret), form, needle))
    return out


def find_in_bytes(data: bytes, secrets: Iterable[str], where: str) -> list[Leak]:
    """Every (secret, form) found in ``data``; one finding per secret and form."""
    return [Leak(where, masked, form) for masked, form, needle in _needles(secrets) if needle in data]


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def find_in_tree(root: Path, secrets: Iterable[str]) -> list[Leak]:
    """Scan every file under ``root`` (database, WAL, journal, logs, anything else written there)."""
    needles = _needles(list(secrets))
    leaks: list[Leak] = []
    for path in _files(root):
        data = path.read_bytes()
        leaks += [Leak(str(path.relative_to(root)), masked, form)
                  for masked, form, needle in needles if needle in data]
    return leaks


def find_in_calls(calls: list[dict[str, Any]], secrets: Iterable[str]) -> list[Leak]:
    """Scan the parameters of every recorded outbound Bot API call (JSON as sent, and as text)."""
    needles = _needles(list(secrets))
    leaks: list[Leak] = []
    for call in calls:
        params = call.get("params") or {}
        blob = (json.dumps(params, ensure_ascii=False) + "\n" + json.dumps(params)).encode()
        where = f"Bot API call #{call.get('seq')} {call.get('method')}"
        leaks += [Leak(where, masked, form) for masked, form, needle in needles if needle in blob]
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
