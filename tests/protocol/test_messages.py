"""Validation of requests against the op table."""
from __future__ import annotations

import pytest

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import OPS, is_valid_user_id, request_id, validate_request


@pytest.mark.parametrize("user_id", ["a", "tongstar", "A.b_c-9", "-x", "_", "x" * 50])
def test_valid_user_ids(user_id):
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize("user_id", ["", ".hidden", "../x", "a/b", "a\x00b", "x" * 51, "한글", "a b", 5, None])
def test_invalid_user_ids(user_id):
    assert not is_valid_user_id(user_id)


def test_register_fields_and_defaults():
    op, fields = validate_request({"op": "register", "user_id": "kim", "password": "12345678", "extra": 1})
    assert op == "register"
    assert fields == {"user_id": "kim", "password": "12345678", "name": None}


@pytest.mark.parametrize("message, needle", [
    ({}, "'op'"),
    ({"op": 5}, "'op'"),
    ({"op": "fly"}, "unknown op"),
    ({"op": "register", "password": "12345678"}, "'user_id' is required"),
    ({"op": "register", "user_id": "../x", "password": "12345678"}, "user_id"),
    ({"op": "register", "user_id": "kim", "password": "short"}, "at least 8"),
    ({"op": "register", "user_id": "kim", "password": b"bytes-not-str"}, "must be a string"),
    ({"op": "register", "user_id": "kim", "password": "12345678", "name": ""}, "at least 1"),
    ({"op": "hello", "version": True}, "boolean"),
    ({"op": "hello", "version": -1}, "at least 0"),
    ({"op": "login", "user_id": "kim", "password": "x", "listen_port": 70000}, "at most 65535"),
    ({"op": "register", "user_id": "kim", "password": "1234567\x008"}, "NUL"),
])
def test_bad_requests_name_the_problem(message, needle):
    with pytest.raises(ProtocolError) as info:
        validate_request(message)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert needle in info.value.message


def test_oversized_binary_field_is_too_large():
    from messenger_protocol.messages import Field
    with pytest.raises(ProtocolError) as info:
        Field("image", bytes, max_len=10).validate(b"x" * 11, "image")
    assert info.value.code is ErrorCode.TOO_LARGE


@pytest.mark.parametrize("rid, expected", [(1, 1), (0, 0), (2**53, 2**53), (2**53 + 1, None), (-1, None),
                                           ("1", None), (True, None), (None, None)])
def test_request_id(rid, expected):
    assert request_id({"id": rid}) == expected


def test_every_op_is_documented():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for op in OPS:
        assert f"`{op}`" in doc, f"docs/protocol.md does not document {op}"
    for code in ErrorCode:
        assert f"`{code.value}`" in doc, f"docs/protocol.md does not document {code.value}"
