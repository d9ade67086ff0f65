"""Decision L1: the signing rule, its published vectors, and the sandbox agreeing over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.lazop import started
from worker.platforms.lazop.signing import prepare, sign, string_to_sign
from worker.sandbox.lazop import LazopSandbox

VECTOR_1_PARAMS = {
    "access_token": "test",
    "app_key": "123456",
    "order_id": "1234",
    "sign_method": "sha256",
    "timestamp": "1517820392000",
}
VECTOR_2_PARAMS = {"foo": "1", "bar": "2", "foo_bar": "3", "foobar": "4"}


def test_vector_1_the_official_doc_sample_signs_as_published() -> None:
    assert sign("/order/get", VECTOR_1_PARAMS, "helloworld") == (
        "4190D32361CFB9581350222F345CB77F3B19F0E31D162316848A2C1FFD5FAB4A"
    )


def test_vector_1_string_to_sign_is_the_path_then_sorted_names_and_values() -> None:
    assert string_to_sign("/order/get", VECTOR_1_PARAMS) == (
        "/order/getaccess_tokentestapp_key123456order_id1234sign_methodsha256timestamp1517820392000"
    )


def test_vector_2_sorts_names_in_ascii_order() -> None:
    assert sign("/test/api", VECTOR_2_PARAMS, "1234") == (
        "988085883BF9D32D251478D23122C7ECC91518CDF63BA22F792000A378F52409"
    )


def test_vector_3_the_same_parameters_with_another_secret() -> None:
    assert sign("/test/api", VECTOR_2_PARAMS, "secret") == (
        "C9E42CE09BA9FE95ECCB17111AA4E3F41D1C82F000435219C75936A427D9C945"
    )


def test_vector_4_system_parameters_in_any_order() -> None:
    params = {
        "app_key": "123456",
        "timestamp": "1700000000000",
        "sign_method": "sha256",
        "access_token": "test-token",
    }
    assert sign("/order/cancel", params, "test-secret") == (
        "91375F42B474CECEE7172759B6400E74F10FBB6E9E9E145EA2A27DFA17556B18"
    )


def test_the_sign_parameter_itself_is_not_signed() -> None:
    with_sign = {**VECTOR_1_PARAMS, "sign": "ANYTHING"}
    assert sign("/order/get", with_sign, "helloworld") == sign(
        "/order/get", VECTOR_1_PARAMS, "helloworld"
    )


def test_none_and_empty_values_are_neither_signed_nor_sent() -> None:
    assert prepare({"a": "1", "b": None, "c": "", "d": 0}) == {"a": "1", "d": "0"}


def test_booleans_are_sent_and_signed_as_lowercase_true_and_false() -> None:
    assert prepare({"debug": True, "quiet": False}) == {"debug": "true", "quiet": "false"}


# --- the sandbox verifies what the client signs, over HTTP ---------------------------------------

_SYSTEM = {"app_key", "timestamp", "sign_method", "sign", "access_token"}
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)),  # lone surrogates cannot be UTF-8
    min_size=1,
    max_size=30,
)
_PARAMS = st.dictionaries(_TEXT.filter(lambda name: name not in _SYSTEM), _TEXT, max_size=6)


@pytest.fixture(scope="module")
def lazop_sandbox() -> Iterator[LazopSandbox]:
    yield from started(LazopSandbox())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=_PARAMS, method=st.sampled_from(["GET", "POST"]))
def test_the_sandbox_accepts_any_unicode_parameters_the_client_signs(
    lazop_sandbox: LazopSandbox, params: dict[str, str], method: str
) -> None:
    sandbox = lazop_sandbox
    signed = prepare(
        {
            "app_key": sandbox.app_key,
            "timestamp": str(int(time.time() * 1000)),
            "sign_method": "sha256",
            **params,
        }
    )
    signed["sign"] = sign("/auth/token/create", signed, sandbox.app_secret)
    url = sandbox.auth_url + "/auth/token/create"
    if method == "GET":
        response = requests.get(url, params=signed, timeout=10)
    else:
        response = requests.post(url, data=signed, timeout=10)

    # Past the signature check, the sandbox asks for the missing code (or finds it wrong).
    assert response.json()["code"] in ("MissingParameter", "InvalidCode")
