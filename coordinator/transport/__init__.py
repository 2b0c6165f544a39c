"""Transports: WebSocket and HTTP over one ASGI app served by uvicorn."""
