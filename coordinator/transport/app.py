"""One ASGI application: the WebSocket path goes to the WebSocket endpoint, everything else to
the HTTP routes."""

from __future__ import annotations

from typing import Any

from coordinator.service.coordinator import CoordinatorService
from coordinator.transport.http import HttpApi
from coordinator.transport.websocket import websocket_endpoint


class CoordinatorApp:
    def __init__(self, service: CoordinatorService) -> None:
        self.service = service
        self.ws_path = service.config.base_path + "/ws"
        self.http = HttpApi(service).app()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            if scope["path"] == self.ws_path:
                await websocket_endpoint(self.service, scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.http(scope, receive, send)
