"""The demo keys look like real keys and cover every stand-in outcome the README promises."""

from __future__ import annotations

import re

import pytest

from bot.standins.demo_keys import DEMO_KEYS, demo_keys_markdown, register_demo_keys
from bot.standins.openai import Behaviour, FakeOpenAI

PROJECT_KEY = re.compile(r"^sk-proj-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}$")
SERVICE_ACCOUNT_KEY = re.compile(r"^sk-svcacct-[A-Za-z0-9_-]{74}T3BlbkFJ[A-Za-z0-9_-]{74}$")


@pytest.mark.parametrize("name", sorted(DEMO_KEYS))
def test_demo_key_has_a_real_shape_and_a_readable_hint(name: str) -> None:
    demo = DEMO_KEYS[name]
    if name == "service_account_valid":
        assert SERVICE_ACCOUNT_KEY.match(demo.key) and len(demo.key) == 167
    else:
        assert PROJECT_KEY.match(demo.key) and len(demo.key) == 56
    assert demo.key.split("-", 2)[-1].startswith("Demo")
    assert Behaviour(demo.behaviour) and demo.description.endswith(".")


def test_demo_keys_are_distinct_and_stable() -> None:
    keys = [demo.key for demo in DEMO_KEYS.values()]
    assert len(set(keys)) == len(keys)
    assert len({key[-4:] for key in keys}) == len(keys)  # the bot can tell them apart by last four
    assert DEMO_KEYS["valid"].key.startswith("sk-proj-DemoValid")


def test_register_and_markdown() -> None:
    fake = FakeOpenAI()
    register_demo_keys(fake)
    assert fake._take_behaviour(DEMO_KEYS["no_credit"].key) is Behaviour.INSUFFICIENT_QUOTA
    table = demo_keys_markdown()
    assert all(demo.key in table for demo in DEMO_KEYS.values())
