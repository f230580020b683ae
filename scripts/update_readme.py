"""Regenerate the generated parts of README.md: the state diagram (and the settings table).

Run: .venv/bin/python scripts/update_readme.py  (tests/test_readme.py fails when they are stale)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def diagram_block() -> str:
    from flows.diagram import mermaid

    return f"```mermaid\n{mermaid()}\n```"


def settings_block() -> str | None:
    try:
        from scripts.settings_table import settings_table  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(settings_table())


def replace_between(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    return pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)


def render(text: str) -> str:
    text = replace_between(text, "diagram", diagram_block())
    settings = settings_block()
    if settings is not None:
        text = replace_between(text, "settings", settings)
    return text


if __name__ == "__main__":
    readme = ROOT / "README.md"
    readme.write_text(render(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print("README.md updated")
