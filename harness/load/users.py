"""Locust users for sync protocol v1: WebSocket writer, subscriber, reader, snapshotter,
churner, and HTTP writer and reader. Imported only inside a Locust process (gevent).

WebSocket users use the `websockets` sync client, which works under gevent's patching. Every
request is timed with `events.request.fire`; request names are `handshake`, `apply->ack`,
`apply->push` (at each receiver, from the stamp the writer put in the value), `get_changes` and
`snapshot`, and a failure's error is the protocol's code (`RATE_LIMITED`, `connection_closed`,
`timeout`, ...), which is what Locust groups failures by.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

from locust import HttpUser, User, constant, constant_throughput, events, task
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from harness.load import wire
from harness.load.profiles import LoadParams
from harness.load.sample import Sample

PARAMS = LoadParams.from_env()
SAMPLE = Sample(PARAMS.history_dir, PARAMS.history_max_ops, PARAMS.t0)
REQUEST_TIMEOUT_S = 10.0
SNAPSHOT_TIMEOUT_S = 30.0
_numbers = itertools.count()


@events.test_stop.add_listener
@events.quitting.add_listener
def _flush_sample(**_: Any) -> None:
    """Every line of the sample on disk before the harness reads it."""
    SAMPLE.flush()


class ProtocolError(Exception):
    """A request that failed; its repr is the bare code, so Locust's failure table is by code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code, message)
        self.code = code

    def __repr__(self) -> str:
        return self.code


def ws_url(host: str) -> str:
    """http(s)://h:p/sync -> ws(s)://h:p/sync/ws (a ws URL is taken as it is)."""
    host = host.rstrip("/")
    if host.startswith(("ws://", "wss://")):
        return host if host.endswith("/ws") else host + "/ws"
    return "ws" + host.removeprefix("http") + "/ws"


def database_for(number: int) -> str:
    return f"{PARAMS.database_prefix}load-{number % PARAMS.databases}"


class _Identity:
    """What every user is: a process name, a site, a database."""

    kind = "user"

    def _identity(self, fanout: bool = False) -> None:
        number = next(_numbers)
        self.process = f"{self.kind}-{os.getpid()}-{number}"
        self.site = wire.new_site_id()
        self.site_text = wire.site_id_text(self.site)
        self.clock = wire.Clock(self.site)
        self.database = database_for(0 if fanout else number)
        self.sent = 0


class WsUser(_Identity, User):
    """A WebSocket session that (re)connects and handshakes on demand."""

    abstract = True
    fanout = False
    # Only a session that is always reading measures apply->push: one that reads between its
    # own requests would count the time a push waited in its buffer as delivery time.
    measures_push = False

    def on_start(self) -> None:
        self._identity(self.fanout)
        self.ws: ClientConnection | None = None

    def on_stop(self) -> None:
        self._close()
        SAMPLE.flush()

    # plumbing -------------------------------------------------------------------------------
    def _fire(self, name: str, started: float, exc: Exception | None = None, length: int = 0) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=exc,
            context={"database": self.database},
        )

    def _close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            try:
                ws.close()
            except (OSError, WebSocketException):  # already gone: nothing to tell
                pass

    def _connected(self) -> ClientConnection | None:
        """The open session, or a new one (the handshake is timed); None when that failed."""
        if self.ws is not None:
            return self.ws
        started = time.perf_counter()
        hello = {
            "type": "handshake",
            "databaseId": self.database,
            "siteId": self.site_text,
            "protocolVersion": 1,
        }
        op = SAMPLE.invoke(self.process, "handshake", dict(hello))
        if PARAMS.token:
            hello["token"] = PARAMS.token
        try:
            self.ws = connect(
                ws_url(self.environment.host or ""),
                open_timeout=REQUEST_TIMEOUT_S,
                close_timeout=1,
                max_size=2**24,
            )
            self.ws.send(json.dumps(hello))
            ack = self._await(lambda m: m.get("type") == "handshake_ack", REQUEST_TIMEOUT_S)
        except Exception as exc:
            error = self._failure(exc)
            SAMPLE.complete(op, self.process, "handshake", "fail", None, error.code)
            self._fire("handshake", started, error)
            self._close()
            return None
        SAMPLE.complete(op, self.process, "handshake", "ok", ack)
        SAMPLE.event(
            self.process,
            "session",
            conn=1,
            databaseId=self.database,
            siteId=self.site_text,
            connectionId=ack.get("connectionId"),
        )
        self._fire("handshake", started)
        return self.ws

    def _failure(self, exc: Exception) -> ProtocolError:
        if isinstance(exc, ProtocolError):
            return exc
        if isinstance(exc, TimeoutError):
            return ProtocolError("timeout", str(exc))  # the session stays: late answers are skipped
        self._close()  # closed by the peer, refused, or broken: the next request reconnects
        if isinstance(exc, ConnectionClosed):
            return ProtocolError("connection_closed", str(exc))
        return ProtocolError(type(exc).__name__, str(exc))

    def _await(self, wanted: Any, timeout_s: float) -> dict[str, Any]:
        """Frames until one `wanted(frame)` is true; an `error` frame fails the request. Every
        other frame is still looked at (pushes are measured whoever receives them)."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer in {timeout_s:g} s")
            frame = json.loads(self.ws.recv(timeout=left))
            if not isinstance(frame, dict):
                continue
            if frame.get("type") == "error":
                if frame.get("fatal"):
                    self._close()
                raise ProtocolError(str(frame.get("code")), str(frame.get("message")))
            if wanted(frame):
                return frame
            self._observe(frame)

    def _observe(self, frame: dict[str, Any]) -> None:
        if frame.get("type") != "push_changes" or not self.measures_push:
            return
        for value in wire.pushed_values(frame):
            age = wire.stamp_age_ms(value)
            if age is not None:
                self.environment.events.request.fire(
                    request_type="WS", name="apply->push", response_time=max(0.0, age),
                    response_length=0, exception=None, context={"database": self.database},
                )  # fmt: skip
        SAMPLE.message(self.process, frame)

    def _apply(self) -> None:
        ws = self._connected()
        if ws is None:
            return
        self.sent += 1
        request_id = f"{self.process}:{self.sent}"
        cs = wire.change_set(self.clock, self.process, self.sent)
        op = SAMPLE.invoke(self.process, "apply", {"requestId": request_id, "changeSets": [cs]})
        started = time.perf_counter()
        try:
            ws.send(json.dumps({"type": "apply_changes", "changes": [cs], "requestId": request_id}))
            result = self._await(
                lambda m: m.get("type") == "apply_result" and m.get("requestId") == request_id,
                REQUEST_TIMEOUT_S,
            )
        except Exception as exc:
            error = self._failure(exc)
            unknown = error.code in ("connection_closed", "timeout")
            SAMPLE.complete(op, self.process, "apply", "info" if unknown else "fail", None, error.code)
            self._fire("apply->ack", started, error)
            return
        SAMPLE.complete(op, self.process, "apply", "ok", result)
        refused = None if result.get("applied") == 1 else ProtocolError("NOT_APPLIED")
        self._fire("apply->ack", started, refused)


class WsWriter(WsUser):
    """Writes one stamped change at a time and waits for its apply_result (closed loop, paced)."""

    kind = "writer"
    wait_time = constant_throughput(PARAMS.rate)

    @task
    def apply(self) -> None:
        self._apply()


class FanoutWriter(WsWriter):
    """The one writer of the fanout-storm profile, on the subscribers' database."""

    kind = "fanout_writer"
    fanout = True
    fixed_count = 1


class WsSubscriber(WsUser):
    """Stays connected and measures apply->push for every stamped change pushed to it."""

    kind = "subscriber"
    wait_time = constant(0)
    measures_push = True

    fanout = PARAMS.profile == "fanout-storm"

    @task
    def listen(self) -> None:
        ws = self._connected()
        if ws is None:
            time.sleep(1.0 / PARAMS.rate)  # pacing of reconnects (gevent sleep), not a synchronisation
            return
        try:
            self._await(lambda m: False, 1.0)
        except TimeoutError:
            return  # a quiet second: listen again
        except Exception as exc:
            error = self._failure(exc)
            self._fire("subscribe", time.perf_counter(), error)


class WsReader(WsUser):
    """Pulls get_changes from a recent HLC (bounded answers) at the user's rate."""

    kind = "reader"
    wait_time = constant_throughput(PARAMS.rate)

    @task
    def read(self) -> None:
        ws = self._connected()
        if ws is None:
            return
        since = wire.hlc_text(max(0, time.time_ns() // 1_000_000 - 5000), 0, bytes(16))
        op = SAMPLE.invoke(self.process, "get_changes", {"sinceHLC": since})
        started = time.perf_counter()
        try:
            ws.send(json.dumps({"type": "get_changes", "sinceHLC": since}))
            answer = self._await(lambda m: m.get("type") == "changes", REQUEST_TIMEOUT_S)
        except Exception as exc:
            error = self._failure(exc)
            SAMPLE.complete(op, self.process, "get_changes", "fail", None, error.code)
            self._fire("get_changes", started, error)
            return
        SAMPLE.complete(
            op, self.process, "get_changes", "ok", {"changeSets": len(answer.get("changeSets") or [])}
        )
        self._fire("get_changes", started, length=len(answer.get("changeSets") or []))


class WsSnapshotter(WsUser):
    """Takes whole WS snapshots, at most one every 2 s per user."""

    kind = "snapshotter"
    wait_time = constant_throughput(min(PARAMS.rate, 0.5))

    @task
    def snapshot(self) -> None:
        ws = self._connected()
        if ws is None:
            return
        op = SAMPLE.invoke(self.process, "snapshot", {})
        started = time.perf_counter()
        chunks = 0

        def done(m: dict[str, Any]) -> bool:
            nonlocal chunks
            chunks += m.get("type") == "snapshot_chunk"
            return m.get("type") == "snapshot_complete"

        try:
            ws.send(json.dumps({"type": "get_snapshot"}))
            self._await(done, SNAPSHOT_TIMEOUT_S)
        except Exception as exc:
            error = self._failure(exc)
            SAMPLE.complete(op, self.process, "snapshot", "fail", {"chunks": chunks}, error.code)
            self._fire("snapshot", started, error)
            return
        SAMPLE.complete(op, self.process, "snapshot", "ok", {"chunks": chunks, "ended": "complete"})
        self._fire("snapshot", started, length=chunks)


class WsChurner(WsUser):
    """Connects, handshakes and leaves, again and again (the reconnect-storm profile)."""

    kind = "churner"
    wait_time = constant_throughput(PARAMS.rate)

    @task
    def churn(self) -> None:
        if self._connected() is not None:
            self._close()


class _HttpUser(_Identity, HttpUser):
    abstract = True
    wait_time = constant_throughput(PARAMS.rate)

    def on_start(self) -> None:
        self._identity()
        self.headers = {"X-Site-Id": self.site_text}
        if PARAMS.token:
            self.headers["Authorization"] = f"Bearer {PARAMS.token}"

    def _answer(self, response: Any) -> tuple[Any, dict[str, Any] | None, str | None]:
        """(body, the `data` of an ok answer, error code); a failed answer marks the response
        failed with its protocol code."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("ok") is not True:
            error = body.get("error") if isinstance(body, dict) else None
            code = str(
                (error.get("code") if isinstance(error, dict) else None) or f"HTTP_{response.status_code}"
            )
            response.failure(ProtocolError(code))
            return body, None, code
        data = body.get("data")
        return body, data if isinstance(data, dict) else {}, None


class HttpWriter(_HttpUser):
    kind = "http_writer"

    @task
    def apply(self) -> None:
        self.sent += 1
        cs = wire.change_set(self.clock, self.process, self.sent)
        op = SAMPLE.invoke(self.process, "http_apply", {"databaseId": self.database, "changeSets": [cs]})
        with self.client.post(
            f"/{self.database}/changes", json={"changes": [cs]}, headers=self.headers,
            name="apply->ack", catch_response=True, timeout=REQUEST_TIMEOUT_S,
        ) as response:  # fmt: skip
            body, data, code = self._answer(response)
            answer = {"status": response.status_code, "body": body}
            if data is None:
                SAMPLE.complete(op, self.process, "http_apply", "fail" if body else "info", answer, code)
                return
            SAMPLE.complete(op, self.process, "http_apply", "ok", answer)
            if data.get("applied") != 1:
                response.failure(ProtocolError("NOT_APPLIED"))


class HttpReader(_HttpUser):
    kind = "http_reader"

    @task
    def read(self) -> None:
        since = wire.hlc_text(max(0, time.time_ns() // 1_000_000 - 5000), 0, bytes(16))
        with self.client.get(
            f"/{self.database}/changes", params={"sinceHLC": since}, headers=self.headers,
            name="get_changes", catch_response=True, timeout=REQUEST_TIMEOUT_S,
        ) as response:  # fmt: skip
            self._answer(response)


USER_CLASSES: dict[str, type[User]] = {
    "writer": WsWriter,
    "fanout_writer": FanoutWriter,
    "subscriber": WsSubscriber,
    "reader": WsReader,
    "snapshotter": WsSnapshotter,
    "churner": WsChurner,
    "http_writer": HttpWriter,
    "http_reader": HttpReader,
}
