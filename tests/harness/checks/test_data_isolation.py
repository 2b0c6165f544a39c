"""database-isolation: a database's final state holds no change sent only to another one."""

from __future__ import annotations

from tests.harness.checks.script import Script, run


def _two_tenants() -> tuple[Script, list[dict[str, object]], list[dict[str, object]]]:
    s = Script()
    s.at(0.0).connect("a", db="a.b").connect("b", db="a_b")
    mine = [s.change_set("a", column="c", value="a's", pk=1)]
    theirs = [s.change_set("b", column="c", value="b's", pk=2)]
    s.at(1.0)
    s.apply("a", mine)
    s.apply("b", theirs)
    s.at(3.0)
    return s, mine, theirs


def test_databases_holding_only_their_own_changes_pass() -> None:
    s, mine, theirs = _two_tenants()
    s.replica("check-a", mine, source="server", db="a.b").replica(
        "check-b", theirs, source="server", db="a_b"
    )
    assert run(s, "database-isolation").status == "pass"


def test_a_restore_that_mixed_in_the_other_tenant_fails() -> None:
    s, mine, theirs = _two_tenants()
    s.replica("check-a", mine + theirs, source="server", db="a.b")
    s.replica("check-b", theirs, source="server", db="a_b")
    result = run(s, "database-isolation")
    assert result.status == "fail"
    assert result.evidence[0]["database"] == "a.b" and result.evidence[0]["written_to"] == ["a_b"]


def test_a_change_sent_to_both_databases_is_not_foreign() -> None:
    s, mine, _ = _two_tenants()
    s.apply("b", mine)  # the same change set also sent to a_b: either may hold it
    s.replica("check-b", mine, source="server", db="a_b")
    assert run(s, "database-isolation").status == "pass"


def test_client_replicas_are_not_the_servers_state() -> None:
    s, mine, theirs = _two_tenants()
    s.replica("a", mine + theirs, db="a.b")  # a client's own replica is not what the server holds
    assert run(s, "database-isolation").status == "unknown"


def test_one_database_or_an_empty_history_is_unknown() -> None:
    assert run(Script(), "database-isolation").status == "unknown"
    s = Script()
    s.connect("a", db="x")
    sets = [s.change_set("a")]
    s.apply("a", sets)
    s.replica("check", sets, source="server", db="x")
    assert run(s, "database-isolation").status == "unknown"
