"""The instrumented protocol client: its own codec (never the coordinator's), a WebSocket and
HTTP client that records everything into a `History`, a local replica, and the behaviours the
scenario runner instantiates."""

from harness.client.backoff import Backoff
from harness.client.behaviours import (
    BEHAVIOURS,
    BadInput,
    Behaviour,
    Churner,
    Intruder,
    Reader,
    SlowReader,
    Snapshotter,
    Subscriber,
    Writer,
    catch_up_all,
    read_server_state,
)
from harness.client.http_api import HttpApi
from harness.client.probe import sample_target
from harness.client.sync_client import ClientConfig, ConnectionLost, RequestTimeout, ServerError, SyncClient

__all__ = [
    "BEHAVIOURS",
    "Backoff",
    "BadInput",
    "Behaviour",
    "Churner",
    "ClientConfig",
    "ConnectionLost",
    "HttpApi",
    "Intruder",
    "Reader",
    "RequestTimeout",
    "ServerError",
    "SlowReader",
    "Snapshotter",
    "Subscriber",
    "SyncClient",
    "Writer",
    "catch_up_all",
    "read_server_state",
    "sample_target",
]
