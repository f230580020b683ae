"""Paste inspection: every kind, every normalisation, and properties that keep the fast guard honest.

Keys are generated from the shapes in ``shared/reference/openai-keys.md`` section 1 (seeded, so tests are
repeatable) instead of being written out: nothing here looks like a leaked secret to a scanner.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.inspection import (
    VERIFIABLE_KINDS,
    PastedKind,
    inspect_pasted_text,
    might_carry_secret,
    normalise_pasted_text,
)
from flows.secret_shapes import INVISIBLE_CHARS, SECRET_PREFIXES, find_tokens

MARK = "T3Blbk" + "FJ"  # base64("OpenAI"), split so scanners leave this file alone
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"
UPPER_ALNUM = string.ascii_uppercase + string.digits


def chars(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def marked(prefix: str, half: int, alphabet: str = URLSAFE) -> Callable[[random.Random], str]:
    """``prefix`` + half + T3BlbkFJ + half: the shape every OpenAI secret-key family shares."""
    return lambda rng: prefix + chars(rng, half, alphabet) + MARK + chars(rng, half, alphabet)


def jwt(rng: random.Random) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"sub": chars(rng, 12), "aud": "https://api.openai.com/v1", "exp": rng.randrange(10**9, 2 * 10**9)}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{chars(rng, 43, URLSAFE)}"


def bot_token(rng: random.Random) -> str:
    return f"{rng.randrange(10**8, 10**10)}:AA{chars(rng, 33, URLSAFE)}"


# name -> (generator, expected kind, expected provider)
FAMILIES: dict[str, tuple[Callable[[random.Random], str], PastedKind, str | None]] = {
    "project_2024": (marked("sk-proj-", 20, ALNUM), PastedKind.PROJECT, "OpenAI"),
    "project_current": (marked("sk-proj-", 74), PastedKind.PROJECT, "OpenAI"),
    "project_132": (marked("sk-proj-", 58), PastedKind.PROJECT, "OpenAI"),
    "svcacct_current": (marked("sk-svcacct-", 74), PastedKind.SERVICE_ACCOUNT, "OpenAI"),
    "svcacct_135": (marked("sk-svcacct-", 58), PastedKind.SERVICE_ACCOUNT, "OpenAI"),
    "service_older": (marked("sk-service-", 74), PastedKind.SERVICE_ACCOUNT, "OpenAI"),
    "service_named": (marked("sk-crm-sync-", 74), PastedKind.SERVICE_ACCOUNT, "OpenAI"),
    "legacy_user": (marked("sk-", 20, ALNUM), PastedKind.LEGACY_USER, "OpenAI"),
    "unscoped_short": (marked("sk-None-", 20), PastedKind.UNSCOPED, "OpenAI"),
    "unscoped_long": (marked("sk-None-", 74), PastedKind.UNSCOPED, "OpenAI"),
    "admin": (marked("sk-admin-", 58), PastedKind.ADMIN, "OpenAI"),
    "admin_long": (marked("sk-admin-", 74), PastedKind.ADMIN, "OpenAI"),
    "anthropic": (lambda r: f"sk-ant-api03-{chars(r, 93, URLSAFE)}AA", PastedKind.OTHER_PROVIDER, "Anthropic"),
    "anthropic_admin": (lambda r: f"sk-ant-admin01-{chars(r, 93, URLSAFE)}AA", PastedKind.OTHER_PROVIDER,
                        "Anthropic"),
    "openrouter": (lambda r: f"sk-or-v1-{chars(r, 64, HEX)}", PastedKind.OTHER_PROVIDER, "OpenRouter"),
    "google": (lambda r: f"AIza{chars(r, 35, URLSAFE)}", PastedKind.OTHER_PROVIDER, "Google"),
    "groq": (lambda r: f"gsk_{chars(r, 52)}", PastedKind.OTHER_PROVIDER, "Groq"),
    "github_classic": (lambda r: f"ghp_{chars(r, 36)}", PastedKind.OTHER_PROVIDER, "GitHub"),
    "github_fine_grained": (lambda r: f"github_pat_{chars(r, 22)}_{chars(r, 59)}", PastedKind.OTHER_PROVIDER,
                            "GitHub"),
    "aws": (lambda r: f"AKIA{chars(r, 16, UPPER_ALNUM)}", PastedKind.OTHER_PROVIDER, "AWS"),
    "huggingface": (lambda r: f"hf_{chars(r, 34, string.ascii_letters)}", PastedKind.OTHER_PROVIDER,
                    "Hugging Face"),
    "azure": (lambda r: chars(r, 32, HEX), PastedKind.OTHER_PROVIDER, "Azure OpenAI"),
    "stripe": (lambda r: f"sk_live_{chars(r, 24)}", PastedKind.OTHER_PROVIDER, "Stripe"),
    "slack": (lambda r: f"xoxb-{chars(r, 11, string.digits)}-{chars(r, 13, string.digits)}-{chars(r, 24)}",
              PastedKind.OTHER_PROVIDER, "Slack"),
    "xai": (lambda r: f"xai-{chars(r, 80)}", PastedKind.OTHER_PROVIDER, "xAI"),
    "perplexity": (lambda r: f"pplx-{chars(r, 48)}", PastedKind.OTHER_PROVIDER, "Perplexity"),
    "replicate": (lambda r: f"r8_{chars(r, 37)}", PastedKind.OTHER_PROVIDER, "Replicate"),
    "telegram_bot": (bot_token, PastedKind.TELEGRAM_BOT_TOKEN, "Telegram"),
    "jwt": (jwt, PastedKind.SESSION_TOKEN, None),
    "chatgpt_session": (lambda r: f"sess-{chars(r, 40)}", PastedKind.SESSION_TOKEN, "ChatGPT"),
}


def make(name: str, seed: int = 0) -> str:
    return FAMILIES[name][0](random.Random(f"{name}/{seed}"))


def project_key(seed: int = 0) -> str:
    return make("project_current", seed)


def _without_marks_on_ascii(text: str) -> str:
    """Combining marks on ASCII characters dropped (after NFKD: "á" is "a" + U+0301)."""
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        if not (unicodedata.category(char).startswith("M") and out and out[-1].isascii()):
            out.append(char)
    return "".join(out)


def whitespace_free(text: str) -> str:
    """The text as recognition reads it, less every separator: no format characters, no marks on ASCII
    characters, NFKC-folded."""
    visible = "".join(c for c in text if unicodedata.category(c) != "Cf")
    folded = unicodedata.normalize("NFKC", _without_marks_on_ascii(visible))
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


# --- every kind ----------------------------------------------------------------------------------------

KEY_CASES = [
    pytest.param(name, wrap, id=f"{name}-{i}")
    for name in FAMILIES
    for i, wrap in enumerate(["{}", "here it is: {}", "`{}`\n"])
]


@pytest.mark.parametrize(("name", "wrap"), KEY_CASES)
def test_each_family_is_recognised(name: str, wrap: str) -> None:
    generate, kind, provider = FAMILIES[name]
    key = generate(random.Random(name + wrap))
    result = inspect_pasted_text(wrap.format(key))
    assert result.kind == kind
    assert result.provider == provider
    assert result.looks_secret
    assert result.should_verify == (kind in VERIFIABLE_KINDS)
    if result.should_verify:
        assert result.key is not None and result.key.reveal() == key
        assert result.shape_warning is None
    else:
        assert result.key is None


MASKED = [
    "sk-abc...def",  # Admin API redacted_value
    "sk-admin...xyz",
    "sk-...abcd",  # dashboard-style truncation
    "sk-4sJHr" + "*" * 39 + "w8ZP",  # OpenAI's 401 echo of a legacy key
    "sk-proj-" + "*" * 152 + "21sA",  # ... and of a current project key
    "Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.openai.com",
    "sk-or-v1" + "*" * 61 + "de5d",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUv…wxyz",
    "my key is sk-abc•••••••xyz9",
]


@pytest.mark.parametrize("text", ["sk-abc123", "sk-proj-abcd", "sk-", "my key is sk-abc123 I think"])
def test_a_key_cut_short_is_incomplete_not_masked(text: str) -> None:
    """Issue 11 item 8: no dots or stars, so not "masked"; too short to be a key."""
    result = inspect_pasted_text(text)
    assert result.kind == PastedKind.INCOMPLETE and not result.should_verify and not result.looks_secret


@pytest.mark.parametrize("text", MASKED, ids=lambda v: repr(v[:24]))
def test_masked_key_is_explained_not_verified(text: str) -> None:
    result = inspect_pasted_text(text)
    assert result.kind == PastedKind.MASKED
    assert not result.should_verify and result.key is None
    assert not result.looks_secret


def test_masked_form_next_to_a_full_key_is_the_full_key() -> None:
    key = project_key(1)
    result = inspect_pasted_text(f"the page shows sk-proj-****{key[-4:]} but I copied {key}")
    assert result.kind == PastedKind.PROJECT and result.key is not None and result.key.reveal() == key


IDENTIFIERS = [
    ("org-" + chars(random.Random(1), 24), PastedKind.ORGANIZATION_ID),
    ("OpenAI-Organization: org-" + chars(random.Random(2), 24), PastedKind.ORGANIZATION_ID),
    ('"organization": "org-' + chars(random.Random(3), 24) + '"', PastedKind.ORGANIZATION_ID),
    ("proj_" + chars(random.Random(4), 24), PastedKind.PROJECT_ID),
    ("OpenAI-Project: proj_" + chars(random.Random(5), 24), PastedKind.PROJECT_ID),
    ("project id proj_" + chars(random.Random(6), 24) + ".", PastedKind.PROJECT_ID),
]


@pytest.mark.parametrize(("text", "kind"), IDENTIFIERS, ids=lambda v: str(v)[:24])
def test_ids_are_named_and_not_secret(text: str, kind: PastedKind) -> None:
    result = inspect_pasted_text(text)
    assert result.kind == kind and result.provider == "OpenAI"
    assert not result.looks_secret and not result.should_verify and result.key is None


NOT_A_KEY = [
    "",
    "   \n ",
    "hello",
    "/start",
    "I'm stuck...",
    "where do I find the key?",
    "https://platform.openai.com/settings/organization/api-keys",
    "test_masked_key_is_explained_not_verified_at_all",  # long but not random-looking
    "req_" + chars(random.Random(7), 32, HEX),  # a request id: long, public
    "user-" + chars(random.Random(8), 24),
]


@pytest.mark.parametrize("text", NOT_A_KEY, ids=lambda v: repr(v[:24]))
def test_ordinary_text_is_not_a_key(text: str) -> None:
    result = inspect_pasted_text(text)
    assert result.kind == PastedKind.NOT_A_KEY
    assert not result.looks_secret and not result.should_verify and result.key is None


@pytest.mark.parametrize("seed", range(3))
def test_long_random_token_is_not_a_key_but_looks_secret(seed: int) -> None:
    result = inspect_pasted_text(chars(random.Random(seed), 40, URLSAFE) + "x9")
    assert result.kind == PastedKind.NOT_A_KEY and result.looks_secret and not result.should_verify


SEVERAL = [
    ("project_current", "svcacct_current", " "),
    ("project_current", "project_2024", "\n"),
    ("legacy_user", "telegram_bot", "\n"),
    ("project_current", "anthropic", "\nANTHROPIC_API_KEY="),
    ("admin", "project_current", ", "),
    ("jwt", "chatgpt_session", " "),
]


@pytest.mark.parametrize(("first", "second", "glue"), SEVERAL)
def test_several_keys_are_not_verified(first: str, second: str, glue: str) -> None:
    result = inspect_pasted_text(make(first) + glue + make(second, 1))
    assert result.kind == PastedKind.SEVERAL_KEYS
    assert result.looks_secret and not result.should_verify and result.key is None


def test_the_same_key_twice_is_one_key() -> None:
    key = project_key()
    result = inspect_pasted_text(f"{key}\n{key}")
    assert result.kind == PastedKind.PROJECT and result.key is not None and result.key.reveal() == key


def test_project_key_with_its_org_id_is_the_key() -> None:
    key = project_key()
    result = inspect_pasted_text(f"OPENAI_API_KEY={key}\nOPENAI_ORG_ID=org-{chars(random.Random(), 24)}")
    assert result.kind == PastedKind.PROJECT


@pytest.mark.parametrize("name", ["admin", "admin_long"])
@pytest.mark.parametrize("wrap", ["{}", "Bearer {}", "OPENAI_ADMIN_KEY={}\n"])
def test_admin_key_is_never_verified(name: str, wrap: str) -> None:
    result = inspect_pasted_text(wrap.format(make(name)))
    assert result.kind == PastedKind.ADMIN
    assert not result.should_verify and result.key is None and result.looks_secret


# --- normalisation ----------------------------------------------------------------------------------

WRAPPERS = [
    "  {}  \n",
    "\t{}\r\n",
    "\u00a0{}\u00a0",
    "'{}'",
    '"{}"',
    "“{}”",
    "‘{}’",
    "«{}»",
    "`{}`",
    "```{}```",
    "```\n{}\n```",
    "```bash\nexport OPENAI_API_KEY={}\n```",
    "<{}>",
    "{{{}}}",
    "${{{}}}",
    "[{}]",
    "({})",
    "{}.",
    "{},",
    "{};",
    "{}!",
    "{}:",
    "Bearer {}",
    "Authorization: Bearer {}",
    "OPENAI_API_KEY={}",
    "OPENAI_API_KEY: {}",
    "export OPENAI_API_KEY={}",
    'api_key="{}"',
    "key: {}",
    "api-key: {}",
    'openai.api_key = "{}"',
    "OPENAI_API_KEY='{}'  # production",
    '{{"api_key": "{}"}}',
    "here is my key: {}. thanks!",
    "https://example.com/v1/chat?key={}",
]


@pytest.mark.parametrize("wrap", WRAPPERS)
@pytest.mark.parametrize("name", ["project_current", "project_2024", "legacy_user", "svcacct_current"])
def test_key_is_found_inside_what_users_paste(wrap: str, name: str) -> None:
    key = make(name)
    result = inspect_pasted_text(wrap.format(key))
    assert result.kind == FAMILIES[name][1]
    assert result.key is not None and result.key.reveal() == key
    assert result.shape_warning is None


@pytest.mark.parametrize("char", list(INVISIBLE_CHARS))
@pytest.mark.parametrize("at", [0, 3, 8, 40, -1])
def test_zero_width_characters_are_removed_anywhere(char: str, at: int) -> None:
    key = project_key()
    position = len(key) if at == -1 else at
    result = inspect_pasted_text(key[:position] + char + key[position:] + char)
    assert result.key is not None and result.key.reveal() == key


@pytest.mark.parametrize("breaks", [[40], [80], [100, 150], [30, 60, 90, 120, 150], [9], [57]])
@pytest.mark.parametrize("newline", ["\n", "\r\n", " \n ", "\n\t"])
def test_wrapped_key_is_rejoined(breaks: list[int], newline: str) -> None:
    key = project_key(2)
    cuts = [0, *breaks, len(key)]
    text = newline.join(key[a:b] for a, b in itertools.pairwise(cuts))
    result = inspect_pasted_text(f'"{text}"')
    assert result.kind == PastedKind.PROJECT
    assert result.key is not None and result.key.reveal() == key


def test_wrapped_legacy_key_is_rejoined() -> None:
    key = make("legacy_user")
    result = inspect_pasted_text(f"{key[:30]}\n{key[30:]}")
    assert result.key is not None and result.key.reveal() == key and result.shape_warning is None


@pytest.mark.parametrize("after", ["thanks", "Thanks!", "ok", "please check"])
def test_word_on_the_next_line_is_not_glued_to_the_key(after: str) -> None:
    key = project_key()
    result = inspect_pasted_text(f"{key}\n{after}")
    assert result.key is not None and result.key.reveal() == key


def test_word_after_a_cut_key_is_not_glued_either() -> None:
    cut = project_key()[:100]
    result = inspect_pasted_text(f"{cut}\nthanks")
    assert result.key is not None and result.key.reveal() == cut
    assert result.shape_warning is not None


def test_two_keys_on_two_lines_are_not_joined() -> None:
    assert inspect_pasted_text(f"{make('legacy_user')}\n{make('legacy_user', 1)}").kind == PastedKind.SEVERAL_KEYS


def test_a_space_inside_a_key_is_undone() -> None:
    """Issue 10: a key split by a space is still the key (it used to be cut at the space)."""
    key = project_key()
    result = inspect_pasted_text(f"{key[:60]} {key[60:]}")
    assert result.key is not None and result.key.reveal() == key and result.shape_warning is None


def test_a_space_between_a_cut_key_and_a_word_stays() -> None:
    key = project_key()
    result = inspect_pasted_text(f"{key[:60]} please")
    assert result.key is not None and result.key.reveal() == key[:60] and result.shape_warning is not None


# --- formats are hints, not verdicts --------------------------------------------------------------

UNKNOWN_SHAPES = [
    ("sk-" + chars(random.Random(1), 32, HEX), PastedKind.LEGACY_USER, "shorter"),  # e.g. a DeepSeek key
    ("sk-" + chars(random.Random(2), 48), PastedKind.LEGACY_USER, "lacks"),  # no marker: a proxy's key?
    ("sk-" + chars(random.Random(3), 20), PastedKind.LEGACY_USER, "shorter"),
    (project_key()[:90], PastedKind.PROJECT, "shorter"),  # cut off
    (project_key() + "abcdefghij", PastedKind.PROJECT, "longer"),  # an extra paste
    ("sk-svcacct-" + chars(random.Random(4), 120, URLSAFE), PastedKind.SERVICE_ACCOUNT, "lacks"),
    ("sk-None-" + chars(random.Random(5), 60), PastedKind.UNSCOPED, "lacks"),
    ("sk-proj-" + chars(random.Random(6), 40, "_-") + MARK + chars(random.Random(6), 40), PastedKind.PROJECT,
     "unusual"),
]


@pytest.mark.parametrize(("text", "kind", "warning"), UNKNOWN_SHAPES, ids=lambda v: str(v)[:12])
def test_plausible_unknown_shape_is_still_verified_with_a_warning(text: str, kind: PastedKind,
                                                                   warning: str) -> None:
    result = inspect_pasted_text(f" {text} ")
    assert result.kind == kind
    assert result.should_verify and result.key is not None and result.key.reveal() == text
    assert result.shape_warning is not None and warning in result.shape_warning


# --- no plaintext anywhere --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_result_never_prints_the_secret(name: str) -> None:
    key = make(name)
    result = inspect_pasted_text(f"key: {key}")
    for shown in (repr(result), str(result), f"{result}", repr(result.key), str(result.key)):
        assert key not in shown
        assert key[10:-4] not in shown


# --- properties -------------------------------------------------------------------------------------

KIND_NAMES = {
    "project", "service_account", "legacy_user", "unscoped", "admin", "masked", "incomplete", "organization_id",
    "project_id", "other_provider", "telegram_bot_token", "session_token", "several_keys", "not_a_key",
}

any_text = st.text(alphabet=st.characters(exclude_categories=()))
generated_key = st.builds(make, st.sampled_from(sorted(FAMILIES)), st.integers(0, 10**6))
key_fragment = st.builds(lambda key, a, b: key[a:b], generated_key, st.integers(0, 60), st.integers(1, 200))
glue = st.sampled_from([
    " ", "\n", "\r\n", " \n", "\t", "\u00a0", *INVISIBLE_CHARS, "...", "…", "*", "****", "`", "```", '"', "'",
    "=", ":", ".", ",", "-", "_", "${", "}", "<", ">", "Bearer ", "OPENAI_API_KEY=", "org-", "proj_",
    "12345:", "bot", "https://api.telegram.org/bot", *SECRET_PREFIXES,
])
noise = st.one_of(st.text(max_size=12), st.text(alphabet=URLSAFE, max_size=40), glue)
# short secrets sit near the guard's thresholds: a prefix plus 0-40 characters, a bot-token-ish pair, and
# a key's first characters wrapped onto the next line
body = st.builds(lambda n, seed, alphabet: chars(random.Random(seed), n, alphabet),
                 st.integers(0, 40), st.integers(0, 2**32), st.sampled_from([ALNUM, URLSAFE, HEX]))
short_secret = st.one_of(
    st.builds(str.__add__, st.sampled_from([*SECRET_PREFIXES, "sk-proj-", "sk-None-", "sk_live_", "sk-ant-"]),
              body),
    st.builds("{}:{}".format, st.integers(0, 10**12), body),
    st.builds("{}\n{}".format, st.builds(str.__add__, st.just("sk-"), body), body),
)
pasted_text = st.lists(st.one_of(generated_key, key_fragment, short_secret, noise, glue), max_size=10).map(
    "".join)


def test_fast_prefilter_literals_cover_every_prefix() -> None:
    """might_carry_secret skips its prefix regex unless one of these is present (see secret_shapes)."""
    assert all("-" in p or "_" in p or p in ("eyJ", "AIza", "AKIA", "ASIA") for p in SECRET_PREFIXES)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_never_raises_and_kind_is_one_of_thirteen(text: str) -> None:
    result = inspect_pasted_text(text)
    assert result.kind in KIND_NAMES and len(PastedKind) == 14


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(exclude_categories=()), min_size=1, max_size=40), st.integers(1, 5000))
def test_huge_texts_do_not_break_it(chunk: str, times: int) -> None:
    text = (chunk * times)[:100_000]
    assert inspect_pasted_text(text).kind in KIND_NAMES
    might_carry_secret(text)


@settings(max_examples=500, deadline=None)
@given(pasted_text)
def test_verified_key_comes_from_the_input(text: str) -> None:
    result = inspect_pasted_text(text)
    assert result.kind in KIND_NAMES
    assert result.should_verify == (result.kind in VERIFIABLE_KINDS)
    if result.should_verify:
        assert result.key is not None
        plain = result.key.reveal()
        assert plain in whitespace_free(normalise_pasted_text(text))
        assert plain in whitespace_free(text)
        assert plain not in repr(result)
    else:
        assert result.key is None
    if result.kind in (PastedKind.ADMIN, PastedKind.MASKED):
        assert not result.should_verify


@settings(max_examples=1500, deadline=None)
@given(pasted_text)
def test_fast_guard_over_approximates_inspection(text: str) -> None:
    """Critical: the runtime deletes on might_carry_secret; it must never miss what inspection calls secret."""
    if inspect_pasted_text(text).looks_secret:
        assert might_carry_secret(text)


@settings(max_examples=1500, deadline=None)
@given(pasted_text)
def test_fast_guard_over_approximates_the_raw_scan(text: str) -> None:
    """Log redaction scans text as is (no normalisation) behind the same fast check."""
    if any(token.kind.is_secret for token in find_tokens(text)):
        assert might_carry_secret(text)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(short_secret, glue, st.text(max_size=3)), max_size=5).map("".join))
def test_fast_guard_over_approximates_near_its_thresholds(text: str) -> None:
    if inspect_pasted_text(text).looks_secret or any(t.kind.is_secret for t in find_tokens(text)):
        assert might_carry_secret(text)


@pytest.mark.parametrize("prefix", [*SECRET_PREFIXES, "sk-proj-", "sk-None-", "sk-admin-", "sk_live_", "sk-ant-"])
def test_fast_guard_over_approximates_every_prefix_at_every_length(prefix: str) -> None:
    rng = random.Random(prefix)
    for before in ("", " ", "-", "_", "a", "=", "\u200b", "a\u200b", "\n"):
        for after in ("", " ", "...", "\nabcdefghijklmnopqrstuvwxyz0123"):
            for n in range(41):
                for alphabet in (ALNUM, URLSAFE, UPPER_ALNUM):
                    text = before + prefix + chars(rng, n, alphabet) + after
                    if inspect_pasted_text(text).looks_secret or any(t.kind.is_secret for t in find_tokens(text)):
                        assert might_carry_secret(text), repr(text)


@pytest.mark.parametrize("char", list(INVISIBLE_CHARS))
def test_fast_guard_sees_a_secret_behind_a_zero_width_character(char: str) -> None:
    """Removing the character glues the key to the word before it; the raw text still has the key."""
    text = f"a{char}sk-proj-{chars(random.Random(), 20)}"
    assert any(t.kind.is_secret for t in find_tokens(text))
    assert might_carry_secret(text)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_fast_guard_over_approximates_on_any_text(text: str) -> None:
    if inspect_pasted_text(text).looks_secret or any(t.kind.is_secret for t in find_tokens(text)):
        assert might_carry_secret(text)


# --- issue 10: obfuscated keys, as users and attackers send them ------------------------------------


EVERY_CF = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]


def test_every_format_character_is_removed() -> None:
    """Category Cf (U+2063 invisible separator, U+2066 isolates, U+202E override ...) all go, like U+200B;
    between two words they leave a space (recognition text only), so no word is glued to a key."""
    assert normalise_pasted_text("a" + "".join(EVERY_CF) + "b") == "a b"
    assert normalise_pasted_text("a:" + "".join(EVERY_CF) + "b") == "a:b"
    key = project_key()
    for char in EVERY_CF:
        assert inspect_pasted_text(char.join(key)).key.reveal() == key  # type: ignore[union-attr]


EVERY_MARK = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)).startswith("M")]


def test_every_combining_mark_on_a_key_is_dropped() -> None:
    """Category Mn/Mc/Me (U+0336 strike-through, U+0332 underline, U+0301, a Devanagari nukta, an
    Arabic fatha ...) on every character of a key: recognition reads the key, the guard deletes it."""
    key = make("legacy_user")
    for mark in EVERY_MARK:
        text = "".join(c + mark for c in key)
        result = inspect_pasted_text(text)
        assert result.key is not None and result.key.reveal() == key, f"U+{ord(mark):04X}"
        assert might_carry_secret(text), f"U+{ord(mark):04X}"


@pytest.mark.parametrize("text", ["नमस्ते दोस्त, key 42", "مَرْحَبًا بِكُمْ: ok", "क्या हाल है?", "שָׁלוֹם", "สวัสดีครับ"])
def test_marks_on_other_letters_stay_in_the_recognition_text(text: str) -> None:
    """Only marks on ASCII characters go (and the accents NFKD splits off Latin letters): a Devanagari
    vowel sign, an Arabic haraka or a Hebrew point is part of its word."""
    assert normalise_pasted_text(text) == unicodedata.normalize("NFKC", text)


@pytest.mark.parametrize(("before", "after"), [("mykey", ""), ("Here", "thanks"), ("", "thanks"), ("key:", "")])
@pytest.mark.parametrize("char", ["\u200b", "\u2063", "\u2066", "\ufeff"])
def test_an_invisible_character_next_to_a_key_does_not_glue_a_word_to_it(before: str, after: str,
                                                                       char: str) -> None:
    key = project_key()
    result = inspect_pasted_text(f"{before}{char}{key}{char if after else ''}{after}")
    assert result.key is not None and result.key.reveal() == key


def _every(text: str, n: int, sep: str) -> str:
    return sep.join(text[i : i + n] for i in range(0, len(text), n))


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if 33 <= ord(c) < 127 else c for c in text)


OBFUSCATIONS: dict[str, Callable[[str], str]] = {
    **{f"U+{ord(c):04X} every {n}": (lambda k, c=c, n=n: _every(k, n, c))
       for c in "\u200b\u2063\u2066\u2069\u202e\u00ad\ufeff\u2060\u180e\u034f\ufe0f" for n in (1, 7)},
    **{f"{name} every {n}": (lambda k, s=s, n=n: _every(k, n, s))
       for name, s in {"space": " ", "NBSP": "\u00a0", "tab": "\t", "LF": "\n", "CRLF": "\r\n",
                       "ideographic space": "\u3000", "U+2028": "\u2028", "two spaces": "  "}.items()
       for n in (1, 2, 3, 4, 5, 8, 16, 25, 32, 50)},
    "fullwidth": _fullwidth,
    "fullwidth prefix": lambda k: _fullwidth(k[:8]) + k[8:],
    "en dash after sk": lambda k: k.replace("-", "\u2013", 1),
    "non-breaking hyphens": lambda k: k.replace("-", "\u2011"),
    "zero-width then spaces": lambda k: _every(_every(k, 10, "\u200b"), 33, " "),
    "bidi isolate around": lambda k: f"\u2066{k}\u2069",
    "right-to-left override": lambda k: f"\u202e{k}\u202c",
    "irregular spaces": lambda k: f"{k[:13]} {k[13:40]} {k[40:101]} {k[101:]}",
    "two halves": lambda k: f"{k[: len(k) // 2]} {k[len(k) // 2 :]}",
    "env line spaced": lambda k: f"OPENAI_API_KEY={_every(k, 25, ' ')}",
    "quoted, zero-width": lambda k: f'"{_every(k, 5, chr(0x2063))}"',
    "backticks, spaced": lambda k: f"`{_every(k, 20, ' ')}` thanks",
    "code fence, wrapped": lambda k: f"```\n{_every(k, 40, chr(10))}\n```",
    "export, NBSP": lambda k: f"export OPENAI_API_KEY='{_every(k, 16, chr(0xA0))}'",
    "Cyrillic lookalikes": lambda k: k.translate(str.maketrans("aoepcsAOEPC", "аоерсѕАОЕРС")),
    "Greek lookalikes": lambda k: k.translate(str.maketrans("oAEKT", "οΑΕΚΤ")),
    "lookalikes, spaced": lambda k: _every(k.translate(str.maketrans("ao", "ао")), 30, " "),
    # combining marks on every character: struck through, underlined, accented, enclosed
    **{f"U+{ord(m[0]):04X} on every character": (lambda k, m=m: "".join(c + m for c in k))
       for m in ("̶", "̲", "́", "̵", "̸", "⃝", "̶́", "़", "َ",
                 "𞣐")},
    "U+0336 on the first 30": lambda k: "".join(c + "̶" for c in k[:30]) + k[30:],
    "U+0336 every 7": lambda k: _every(k, 7, "̶"),
    "marks and spaces": lambda k: _every("".join(c + "̲" for c in k), 50, " "),
    "mark after a format character": lambda k: "".join(c + "​̶" for c in k),
    "mark on a lookalike": lambda k: "".join(c + "̶" for c in k.translate(str.maketrans("ao", "ао"))),
    "precomposed accents": lambda k: k.translate(str.maketrans("aeiouAEIOUnc", "áéíóúÁÉÍÓÚñç")),
    "accents on fullwidth": lambda k: "".join(c + "́" for c in _fullwidth(k)),
}


@pytest.mark.parametrize("name", ["project_current", "project_2024", "legacy_user", "svcacct_current",
                                  "unscoped_short"])
@pytest.mark.parametrize("obfuscation", list(OBFUSCATIONS))
def test_obfuscated_key_is_recognised_and_guarded(name: str, obfuscation: str) -> None:
    key = make(name)
    text = OBFUSCATIONS[obfuscation](key)
    assert might_carry_secret(text)
    result = inspect_pasted_text(text)
    assert result.kind == FAMILIES[name][1]
    assert result.key is not None and result.key.reveal() == key


ORDINARY_UNICODE = [
    "Hello — how are you?", "state-of-the-art — and beyond", "Привет, как дела? Где ключ\u200d?",
    "日本語のテキスト\u3000です", "ｈｅｌｌｏ\u3000ｗｏｒｌｄ", "\ufeffHi there", "Let‘s meet at 10:30\u2028tomorrow",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z", "I use s k learn", "my desk - project alpha beta",
    "A A A A A A A A A A A A A A A A A A A A A A A A", "ask -proj", "👨\u200d👩\u200d👧 family", "مرحبا\u200f بالعالم",
    "Это iPhone-овский ключ", "Рассылка по WhatsApp через API стоит 10 рублей", "Ελληνικά κείμενο ΑΒΓ",
    # combining marks that are the text itself: Devanagari vowel signs, Arabic harakat, Hebrew niqqud,
    # Vietnamese and decomposed (NFD) Latin accents, Thai vowels
    "नमस्ते, मैं अपनी ओपनएआई कुंजी कैसे बनाऊँ? कृपया मदद करें।", "क्या यह कुंजी सही है? sk वाली",
    "مَرْحَبًا، كَيْفَ أُنْشِئُ مِفْتَاحًا جَدِيدًا؟", "שָׁלוֹם עוֹלָם", "Tiếng Việt có dấu: chìa khóa của tôi",
    unicodedata.normalize("NFD", "Où est la clé ? Ça coûte très cher, déjà payé"), "สวัสดีครับ ขอบคุณมาก",
    "Configuração da integração: não consigo, também não sei", "été à Montréal",
    "s̶t̶r̶u̶c̶k̶ out, not a key", "u̲n̲d̲e̲r̲ lined",
]


@pytest.mark.parametrize("text", ORDINARY_UNICODE)
def test_ordinary_text_with_unicode_is_not_taken_for_a_key(text: str) -> None:
    assert not might_carry_secret(text)
    assert inspect_pasted_text(text).kind == PastedKind.NOT_A_KEY
