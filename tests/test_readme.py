"""The README's generated parts match the code, and its quick start matches CI."""

from __future__ import annotations

from pathlib import Path

from scripts.update_readme import render

ROOT = Path(__file__).resolve().parent.parent


def test_readme_diagram_and_settings_are_current() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render(text) == text, "run: .venv/bin/python scripts/update_readme.py"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
    assert "bash scripts/start.sh" in readme
