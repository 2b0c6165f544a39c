"""The fuzzer's inputs are invalid by construction: a strategy that could draw valid input
would make the fuzzer report a correct server."""

from __future__ import annotations

import base64
import binascii
import json

from hypothesis import given, settings

from harness.explore.strategies import BAD_HLC, BAD_SITE, HostileInput, hostile_inputs


def _valid_hlc(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 30
    except (binascii.Error, ValueError):
        return False


def _valid_site(value: object) -> bool:
    return isinstance(value, str) and len(value) == 22 and all(c.isalnum() or c in "-_" for c in value)


@settings(max_examples=300, deadline=None)
@given(BAD_HLC, BAD_SITE)
def test_bad_hlcs_and_sites_are_never_valid(hlc: object, site: object) -> None:
    assert not _valid_hlc(hlc)
    assert not _valid_site(site)


@settings(max_examples=300, deadline=None)
@given(hostile_inputs())
def test_every_input_says_what_it_imitates(item: HostileInput) -> None:
    if item.intent == "not_json":
        assert isinstance(item.frame, str)
        try:
            json.loads(item.frame)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{item.frame!r} is JSON")
    elif item.intent == "unknown_type":
        assert isinstance(item.frame, dict) and item.frame["type"] not in {"ping", "handshake", "get_changes"}
    elif item.intent == "bad_input":
        assert isinstance(item.frame, dict) and item.frame["type"] == item.request
    else:
        assert item.channel == "tenant"
    assert item.describe()
