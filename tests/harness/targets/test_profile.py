"""Target profiles: a good file loads; every mistake is reported at its file and line; the
bundled coordinator's profile follows its options."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.targets.profile import ProfileError, bundled_profile, load_profile

GOOD = """\
# a staging server
tokens:
  T1: {databases: ["db*", "tenant-a:*"]}
  T2: {databases: "*"}
token: T1
admin_token_env: SYNC_ADMIN_TOKEN
tombstone_policy: delete-wins
heartbeat_interval_ms: 5000
presence_interval_ms: 250
idle_store_timeout_ms: 300000
capabilities: {seq: true, heartbeat: true, presence: false}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_a_good_profile_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_ADMIN_TOKEN", "s3cret")
    profile = load_profile(_write(tmp_path, GOOD))
    assert profile.tombstone_policy == "delete-wins" and profile.heartbeat_interval_ms == 5000.0
    assert profile.idle_store_timeout_ms == 300000.0 and profile.presence_interval_ms == 250.0
    assert profile.capabilities == {"seq": True, "heartbeat": True, "presence": False}
    assert profile.client_token() == "T1" and profile.admin_token() == "s3cret"
    assert profile.granted("T1", "db2") and profile.granted("T1", "tenant-a:x")
    assert profile.granted("T1", "other") is False and profile.granted("T2", "other") is True
    assert profile.granted("T3", "db") is None  # a token the profile does not know: unknown


def test_token_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "from-env")
    assert load_profile(_write(tmp_path, "token_env: MY_TOKEN\n")).client_token() == "from-env"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("tombstone_policy: revive\nheartbeat_ms: 5\n", 2, "unknown key"),
        ("tombstone_policy: last-wins\n", 1, "revive, delete-wins"),
        ("heartbeat_interval_ms: -5\n", 1, "positive number"),
        ("idle_store_timeout_ms: soon\n", 1, "positive number"),
        ("capabilities:\n  seq: true\n  teleport: true\n", 3, "unknown capability"),
        ("capabilities:\n  seq: yes please\n", 2, "true or false"),
        ("tokens:\n  T1: {databases: []}\n", 2, "non-empty list"),
        ("tokens:\n  T1: db\n", 2, "databases"),
        ("token: a\ntoken_env: B\n", 2, "not both"),
        ("tokens: [\n", 2, "YAML syntax"),
        ("- a list\n", 1, "mapping"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert caught.value.file == str(path) and caught.value.line == line, str(caught.value)
    assert fragment in str(caught.value)


def test_bundled_profile_follows_the_coordinator_options() -> None:
    profile = bundled_profile(
        {"heartbeat_interval_ms": 500, "idle_store_timeout_ms": 1000, "tokens": ["A:a,b=ro", "ADMINISH"]}
    )
    assert profile.heartbeat_interval_ms == 500.0 and profile.idle_store_timeout_ms == 1000.0
    assert profile.tombstone_policy == "revive" and all(profile.capabilities.values())
    assert profile.grants("A") == ("a", "b") and profile.grants("ADMINISH") == ("*",)
    defaults = bundled_profile({})
    assert defaults.heartbeat_interval_ms == 5000.0 and defaults.idle_store_timeout_ms == 60000.0
    assert defaults.granted("anything", "db") is True  # no tokens option: no authentication


def test_bundled_plain_v1_profile_has_no_extensions() -> None:
    profile = bundled_profile({"compat": "plain-v1", "tokens": ["A:a"]})
    assert profile.tombstone_policy == "delete-wins" and profile.idle_store_timeout_ms == 300000.0
    assert not any(profile.capabilities.values()) and profile.heartbeat_interval_ms is None
    assert profile.grants("A") == ("*",)  # plain v1: tokens are valid on every database
    assert bundled_profile({"compat": "plain-v1", "tombstone_policy": "revive"}).tombstone_policy == "revive"


def test_the_shipped_example_profile_loads() -> None:
    profile = load_profile(Path("scenarios/profiles/example.yaml"))
    assert profile.tombstone_policy == "delete-wins" and profile.grants("T2") == ("*",)


def test_the_plain_v1_profile_grants_any_token_everywhere() -> None:
    profile = load_profile(Path("scenarios/profiles/plain-v1.yaml"))
    assert profile.open_access and profile.grants("anything") == ("*",) and profile.grants(None) == ("*",)
    assert profile.granted("writer-token", "other") is True
    assert profile.tombstone_policy == "delete-wins" and profile.capabilities["seq"] is False


def test_tokens_must_be_star_or_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("tokens: everyone\n")
    with pytest.raises(ProfileError, match="must be '\\*'"):
        load_profile(bad)
