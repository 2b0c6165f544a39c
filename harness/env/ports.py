"""Ports on 127.0.0.1: pick a free one, and say clearly when a wanted one is taken."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


class PortInUse(RuntimeError):
    """A port the harness was asked to use is already bound by someone else."""


def free_port() -> int:
    """An ephemeral port that was free a moment ago. Racy by nature: callers that hand it to a
    child retry with another port when the child reports the address in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(port: int, purpose: str) -> None:
    """Raise PortInUse, naming `purpose`, when `port` cannot be bound on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError as exc:
            raise PortInUse(
                f"port {LOCALHOST}:{port} wanted for {purpose} is already in use ({exc.strerror}); "
                "stop whatever holds it or let the harness choose a free port (port 0)"
            ) from exc


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)
