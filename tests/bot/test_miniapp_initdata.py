"""initData validation against Telegram's documented algorithm, with known-answer vectors.

Vector 1 is aiogram's public test vector (``tests/test_utils/test_web_app.py``, token ``42:TEST``): its hash
was computed by another implementation, so agreeing with it checks our reading of the algorithm, not just
our code against itself. Vector 2 is built here step by step from the documentation's wording
(https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app), with a ``signature``
field, which stays in the data-check-string.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote, urlencode

import pytest

from bot.web.initdata import InvalidInitData, data_check_string, sign_init_data, validate_init_data

AIOGRAM_TOKEN = "42:TEST"
AIOGRAM_VECTOR = ("auth_date=1650385342&user=%7B%22id%22%3A42%2C%22first_name%22%3A%22Test%22%7D&query_id=test"
                  "&hash=46d2ea5e32911ec8d30999b56247654460c0d20949b6277af519e76271182803")
TOKEN = "123456789:AAH-documented-algorithm-token_xyz"
NOW = 1_765_000_000


def _documented(fields: dict[str, str], token: str) -> str:
    """The documentation's recipe written out longhand, independent of the module under test."""
    lines = sorted(f"{key}={value}" for key, value in fields.items())
    check = "\n".join(lines).encode()
    secret_key = hmac.new(key=b"WebAppData", msg=token.encode(), digestmod=hashlib.sha256).digest()
    digest = hmac.new(key=secret_key, msg=check, digestmod=hashlib.sha256).hexdigest()
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()) + f"&hash={digest}"


def _fields(user_id: int = 777, auth_date: int = NOW, **extra: str) -> dict[str, str]:
    user = {"id": user_id, "first_name": "Ana", "username": "ana_k", "language_code": "ar"}
    return {"query_id": "AAHdF6IQAAAAAN0XohDhrOrc", "user": json.dumps(user, separators=(",", ":")),
            "auth_date": str(auth_date), "signature": "c2lnbmF0dXJlLWZvci10ZXN0cw", **extra}


def test_aiogram_public_vector_is_accepted_and_its_facts_read() -> None:
    data = validate_init_data(AIOGRAM_VECTOR, AIOGRAM_TOKEN, max_age_s=3600, now=1650385342 + 10)
    assert (data.user_id, data.language, data.auth_date) == (42, "en", 1650385342)
    assert data.digest.startswith("46d2ea5e")


def test_aiogram_vector_fails_with_another_token() -> None:
    with pytest.raises(InvalidInitData, match="wrong hash"):
        validate_init_data(AIOGRAM_VECTOR, "42:INVALID", max_age_s=3600, now=1650385342)


def test_a_vector_built_from_the_documentation_is_accepted_and_signature_is_signed_over() -> None:
    fields = _fields()
    init_data = _documented(fields, TOKEN)
    data = validate_init_data(init_data, TOKEN, max_age_s=3600, now=NOW + 5)
    assert (data.user_id, data.language, data.username) == (777, "ar", "ana_k")
    # Our signer produces the same hash as the longhand recipe.
    assert sign_init_data(fields, TOKEN).rsplit("hash=", 1)[1] == init_data.rsplit("hash=", 1)[1]
    assert data_check_string({**fields, "hash": "x"}).split("\n")[0].startswith("auth_date=")
    # Dropping `signature` (as a validator following the third-party recipe would) changes the hash.
    without = {k: v for k, v in fields.items() if k != "signature"}
    re_encoded = urlencode(fields) + "&hash=" + init_data.rsplit("hash=", 1)[1]
    assert validate_init_data(re_encoded, TOKEN, max_age_s=3600, now=NOW).user_id == 777
    with pytest.raises(InvalidInitData):
        validate_init_data(urlencode(without) + "&hash=" + init_data.rsplit("hash=", 1)[1], TOKEN,
                           max_age_s=3600, now=NOW)


@pytest.mark.parametrize("tamper", [
    lambda s: s.replace("%22id%22%3A777", "%22id%22%3A778"),  # another user
    lambda s: s.replace(f"auth_date={NOW}", f"auth_date={NOW + 1}"),  # a fresher date
    lambda s: s + "&start_param=x",  # an added field
    lambda s: s.replace("hash=", "hash=0")[:-1],  # a changed hash
    lambda s: s.replace("&hash=", "&hash=" + "0" * 64 + "&x="),  # hash replaced, original kept elsewhere
    lambda s: s.split("&hash=")[0],  # no hash
    lambda s: s + "&auth_date=1",  # a field twice
    lambda s: "",
    lambda s: "not a query string",
    lambda s: s + "&pad=" + "x" * 5000,
])
def test_forged_or_malformed_init_data_is_refused(tamper: object) -> None:
    genuine = sign_init_data(_fields(), TOKEN)
    assert validate_init_data(genuine, TOKEN, max_age_s=3600, now=NOW).user_id == 777
    with pytest.raises(InvalidInitData):
        validate_init_data(tamper(genuine), TOKEN, max_age_s=3600, now=NOW)  # type: ignore[operator]


def test_age_is_checked_against_max_age_and_the_future() -> None:
    init_data = sign_init_data(_fields(auth_date=NOW), TOKEN)
    assert validate_init_data(init_data, TOKEN, max_age_s=3600, now=NOW + 3599).auth_date == NOW
    with pytest.raises(InvalidInitData, match="expired"):
        validate_init_data(init_data, TOKEN, max_age_s=3600, now=NOW + 3600)
    with pytest.raises(InvalidInitData, match="expired"):
        validate_init_data(init_data, TOKEN, max_age_s=3600, now=NOW - 120)  # from two minutes ahead


@pytest.mark.parametrize("user", ['{"first_name":"x"}', '{"id":"42"}', '{"id":0}', "[]", "{", '{"id":true}'])
def test_a_signed_init_data_without_a_usable_user_is_refused(user: str) -> None:
    fields = {"auth_date": str(NOW), "user": user}
    with pytest.raises(InvalidInitData, match="no user"):
        validate_init_data(sign_init_data(fields, TOKEN), TOKEN, max_age_s=3600, now=NOW)
