"""Thin FastAPI routers of the TAP service: parse the request, call one service, answer."""
