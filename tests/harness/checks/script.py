"""Hand-made histories for the check tests: a script that plays clients, server messages and
faults at chosen times, recording exactly what the instrumented client records."""

from __future__ import annotations

from typing import Any

from harness.checks.observations import Observations
from harness.history import EventKind, FaultWindow, History, Op, OpName, OpType
from harness.model.changesets import ChangeSetBuilder, HlcClock
from harness.model.codec import encode_site_id
from harness.model.replica import Replica

WALL0 = 1_800_000_000_000.0  # wall-clock ms at run time 0


class Script:
    def __init__(self) -> None:
        self.t = 0.0
        self.history = History(clock=lambda: self.t)
        self.obs = Observations()
        self._conns: dict[str, int] = {}
        self._sites: dict[str, bytes] = {}
        self._writes = 0

    def at(self, t: float) -> Script:
        self.t = t
        return self

    # identities ---------------------------------------------------------------------------------
    def site(self, process: str) -> str:
        if process not in self._sites:
            self._sites[process] = bytes([len(self._sites) + 1]) * 16
            self.history.event(
                process, EventKind.CLOCK, wall_ms=WALL0 + self.t * 1000, siteId=self.site(process)
            )
        return encode_site_id(self._sites[process])

    def conn_id(self, process: str) -> str:
        return f"{process}-c{self._conns.get(process, 0)}"

    # connections --------------------------------------------------------------------------------
    def connect(
        self,
        process: str,
        db: str = "db1",
        authorized_for: list[str] | None = None,
        ok: bool = True,
        error: str = "AUTH_FAILED",
    ) -> Script:
        site = self.site(process)
        number = self._conns.get(process, 0) + 1
        self._conns[process] = number
        self.history.event(process, EventKind.OPEN, conn=number, url="ws://127.0.0.1:1/sync/ws")
        value: dict[str, Any] = {"type": "handshake", "databaseId": db, "siteId": site, "protocolVersion": 1}
        if authorized_for is not None:
            value["authorizedFor"] = authorized_for
        op = self.history.invoke(process, OpName.HANDSHAKE, value)
        if ok:
            ack = {
                "type": "handshake_ack",
                "databaseId": db,
                "serverSiteId": "A" * 22,
                "connectionId": self.conn_id(process),
                "protocolVersion": 1,
            }
            self.history.message(process, "recv", ack)
            self.history.complete(op, "ok", ack)
            self.history.event(
                process,
                EventKind.SESSION,
                conn=number,
                databaseId=db,
                siteId=site,
                connectionId=self.conn_id(process),
            )
        else:
            payload = {"type": "error", "code": error, "message": "no", "fatal": True}
            self.history.message(process, "recv", payload)
            self.history.complete(op, "fail", payload, error)
        return self

    def close(
        self, process: str, code: int | None = 1000, by_client: bool = False, reason: str = ""
    ) -> Script:
        self.history.event(
            process,
            EventKind.CLOSE,
            conn=self._conns[process],
            code=code,
            reason=reason,
            sent_code=code,
            by_client=by_client,
        )
        return self

    def recv(self, process: str, payload: dict[str, Any]) -> Script:
        self.history.message(process, "recv", payload)
        return self

    def notice(self, process: str, code: str, **data: Any) -> Script:
        return self.recv(
            process,
            {
                "type": "notice",
                "code": code,
                "severity": "warning",
                "component": "x",
                "message": "",
                "ts": 0,
                "data": data,
            },
        )

    def heartbeat(self, process: str, backend: str = "ok", seq: int = 0) -> Script:
        return self.recv(
            process,
            {"type": "heartbeat", "ts": WALL0 + self.t * 1000, "seq": seq, "clients": 1, "backend": backend},
        )

    def pause(self, process: str) -> Script:
        self.history.event(process, EventKind.READING_PAUSED, conn=self._conns[process])
        return self

    def resume(self, process: str) -> Script:
        self.history.event(process, EventKind.READING_RESUMED, conn=self._conns[process])
        return self

    # writes -----------------------------------------------------------------------------------
    def change_set(self, process: str, column: str = "c", value: Any = 1, pk: int = 1) -> dict[str, Any]:
        self.site(process)
        self._writes += 1
        clock = HlcClock(self._sites[process], lambda: int(WALL0) + self._writes)
        return ChangeSetBuilder(clock).set("t", [pk], column, value).build().to_wire()

    def apply(
        self,
        process: str,
        change_sets: list[dict[str, Any]],
        outcome: OpType = "ok",
        applied: int | None = None,
        duration: float = 0.01,
        seq: int | None = None,
    ) -> Op:
        op = self.history.invoke(
            process, OpName.APPLY, {"requestId": f"{process}-{self._writes}", "changeSets": change_sets}
        )
        self.t += duration
        count = sum(len(cs["changes"]) for cs in change_sets)
        if outcome == "ok":
            took = count if applied is None else applied
            result = {
                "type": "apply_result",
                "applied": took,
                "skipped": count - took,
                "conflicts": 0,
                "transactions": len(change_sets),
            }
            if seq is not None:
                result["seq"] = seq
            self.history.message(process, "recv", result)
            return self.history.complete(op, "ok", result)
        return self.history.complete(op, outcome, None, "connection_closed")

    def http_apply(
        self,
        process: str,
        change_sets: list[dict[str, Any]],
        applied: int | None = None,
        db: str = "db1",
        duration: float = 0.01,
        seq: int | None = None,
    ) -> Op:
        """POST /:db/changes answered 200 with an ApplyResult in `data` (with its seq, [ext])."""
        op = self.history.invoke(process, OpName.HTTP_APPLY, {"databaseId": db, "changeSets": change_sets})
        self.t += duration
        count = sum(len(cs["changes"]) for cs in change_sets)
        took = count if applied is None else applied
        data: dict[str, Any] = {
            "applied": took,
            "skipped": count - took,
            "conflicts": 0,
            "transactions": len(change_sets),
        }
        if seq is not None:
            data["seq"] = seq
        return self.history.complete(op, "ok", {"status": 200, "body": {"ok": True, "data": data}})

    def raced_change_set(
        self, process: str, wall_ms: int, counter: int = 0, column: str = "c", value: Any = 1, pk: int = 1
    ) -> dict[str, Any]:
        """A change set with a chosen (wallTime, counter): sites racing on one HLC tick."""
        self.site(process)
        clock = HlcClock(self._sites[process], lambda: wall_ms)
        clock._last_wall, clock._counter = wall_ms, counter - 1
        return ChangeSetBuilder(clock).set("t", [pk], column, value).build().to_wire()

    def delete_set(self, process: str, pk: int = 1) -> dict[str, Any]:
        self.site(process)
        self._writes += 1
        clock = HlcClock(self._sites[process], lambda: int(WALL0) + self._writes)
        return ChangeSetBuilder(clock).delete("t", [pk]).build().to_wire()

    def push(self, process: str, change_sets: list[dict[str, Any]], seq: int | None = None) -> Script:
        payload: dict[str, Any] = {"type": "push_changes", "changeSets": change_sets}
        if seq is not None:
            payload["seq"] = seq
        return self.recv(process, payload)

    # ops ----------------------------------------------------------------------------------------
    def op(
        self,
        process: str,
        f: str,
        type: OpType,
        value: Any = None,
        result: Any = None,
        error: str | None = None,
        duration: float = 0.01,
    ) -> Op:
        invoked = self.history.invoke(process, f, value)
        self.t += duration
        return self.history.complete(invoked, type, result, error)

    def replica(
        self,
        process: str,
        change_sets: list[dict[str, Any]],
        source: str = "client",
        db: str = "db1",
        uncertain: list[list[str]] | None = None,
    ) -> Script:
        replica = Replica()
        replica.apply_change_sets(change_sets)
        self.history.event(
            process,
            EventKind.REPLICA,
            source=source,
            caught_up=True,
            databaseId=db,
            siteId=self.site(process),
            uncertain=uncertain or [],
            state=replica.to_json(),
        )
        return self

    # faults -------------------------------------------------------------------------------------
    def fault(self, kind: str, target: str, start: float, end: float | None, **params: Any) -> FaultWindow:
        saved = self.t
        self.t = start
        window = self.history.fault_started(kind, target, params)
        if end is not None:
            self.t = end
            self.history.fault_ended(window)
        self.t = saved
        return window


def run(script: Script, name: str, **params: Any) -> Any:
    from harness.checks.registry import run_check

    return run_check(name, script.history, script.obs, params)
