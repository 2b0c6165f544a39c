"""toxiproxy-server as a child, and the thin API client, against the real binary."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness.env.ports import PortInUse
from harness.env.toxiproxy import ToxiproxyError, ToxiproxyServer
from harness.env.toxiproxy_binary import TOXIPROXY_VERSION, ToxiproxyUnavailable
from tests.harness.env.echo import EchoServer, round_trip_s


async def test_server_starts_reports_its_version_and_proxies_bytes(tmp_path: Path) -> None:
    async with ToxiproxyServer(tmp_path) as server, EchoServer() as echo:
        assert server.version == TOXIPROXY_VERSION
        assert await server.client.version()  # the API answers
        proxy = await server.client.create_proxy("echo", echo.address)
        assert proxy.host == "127.0.0.1" and proxy.port > 0  # port 0 asked: Toxiproxy chose one
        assert await round_trip_s(proxy.listen) < 5.0
        assert set(await server.client.proxies()) == {"echo"}
    assert not server.api_url.endswith(":0")


async def test_disable_refuses_and_enable_listens_on_the_same_address(tmp_path: Path) -> None:
    async with ToxiproxyServer(tmp_path) as server, EchoServer() as echo:
        proxy = await server.client.create_proxy("echo", echo.address)
        await server.client.set_enabled("echo", False)
        with pytest.raises(ConnectionRefusedError):
            await round_trip_s(proxy.listen)
        again = await server.client.set_enabled("echo", True)
        assert again.listen == proxy.listen
        assert await round_trip_s(proxy.listen) < 5.0


async def test_api_errors_name_the_call(tmp_path: Path) -> None:
    async with ToxiproxyServer(tmp_path) as server:
        with pytest.raises(ToxiproxyError, match=r"add latency toxic to 'nope'.*404"):
            await server.client.add_toxic("nope", "latency", {"latency": 1})
        with pytest.raises(ToxiproxyError, match="unknown toxic type 'jitter'"):
            await server.client.add_toxic("nope", "jitter", {})


async def test_a_missing_binary_says_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOXIPROXY_SERVER", "/nonexistent/toxiproxy-server")
    with pytest.raises(ToxiproxyUnavailable, match="TOXIPROXY_SERVER=/nonexistent/toxiproxy-server"):
        async with ToxiproxyServer(tmp_path):
            pass


async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{taken} wanted for toxiproxy-server's API"):
            async with ToxiproxyServer(tmp_path, port=taken):
                pass
        async with ToxiproxyServer(tmp_path) as server:
            with pytest.raises(PortInUse, match=f"proxy 'p' cannot listen on 127.0.0.1:{taken}"):
                await server.client.create_proxy("p", "127.0.0.1:9", listen=f"127.0.0.1:{taken}")
