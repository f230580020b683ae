"""Self-check of the tests' leak scanner (``tests/e2e/leaks.py``, issue 10 item 8).

Before issue 10 it looked at 24-character windows every 12 characters: a 12-23 character piece of a key,
or a key split by U+2063, by spaces or by line breaks, went unseen. Each form is planted here, in a file,
in raw bytes and in a recorded Bot API call, and must be found; a mask must not be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.secret import mask_key
from tests.e2e.leaks import find_in_bytes, find_in_calls, find_in_tree
from tests.e2e.pasting import fresh_key

KEY = fresh_key("project", "Scanner")


def every(n: int, sep: str) -> Callable[[str], str]:
    return lambda key: sep.join(key[i : i + n] for i in range(0, len(key), n))


PLANTED: dict[str, Callable[[str], str]] = {
    "12 characters from the middle": lambda key: key[70:82],
    "12 characters at the end": lambda key: key[-12:],
    "13 characters at the start": lambda key: key[:13],
    "23 characters": lambda key: key[40:63],
    "U+2063 every 5": every(5, "\u2063"),
    "U+2066 every 1": every(1, "\u2066"),
    "U+200B every 11": every(11, "\u200b"),
    "space every 25": every(25, " "),
    "space every 3": every(3, " "),
    "line break every 40": every(40, "\n"),
    "CRLF every 20": every(20, "\r\n"),
    "NBSP every 6": every(6, "\u00a0"),
    "repr escapes of U+2063": lambda key: repr(every(4, "\u2063")(key)),
    "JSON escapes of line breaks": lambda key: json.dumps(every(30, "\n")(key)),
    "JSON escapes of U+200B": lambda key: json.dumps(every(7, "\u200b")(key)),
    "U+0336 on every character": lambda key: "".join(c + "\u0336" for c in key),
    "U+0332 every 3": every(3, "\u0332"),
    "JSON escapes of U+0336": lambda key: json.dumps("".join(c + "\u0336" for c in key)),
}


@pytest.mark.parametrize("form", list(PLANTED))
def test_the_scanner_finds_each_fragment_and_split_form(tmp_path: Path, form: str) -> None:
    planted = PLANTED[form](KEY)
    data = b"noise before " + planted.encode() + b" noise after"
    assert find_in_bytes(data, [KEY], "blob"), form
    (tmp_path / "planted.log").write_bytes(data)
    assert find_in_tree(tmp_path, [KEY]), form
    call = [{"seq": 1, "method": "editMessageText", "params": {"text": f"Problem: {planted}"}}]
    assert find_in_calls(call, [KEY]), form


@pytest.mark.parametrize("shown", [mask_key(KEY), KEY[:8], KEY[-4:], f"{KEY[:8]} … {KEY[-4:]}", KEY[:11]])
def test_masks_and_short_pieces_are_not_leaks(shown: str) -> None:
    assert not find_in_bytes(f"connected {shown} ok\n".encode(), [KEY], "blob")


def test_findings_name_the_secret_only_by_its_mask() -> None:
    leaks = find_in_bytes(every(5, "\u2063")(KEY).encode(), [KEY], "blob")
    assert leaks and all(KEY[8:20] not in str(leak) for leak in leaks)
