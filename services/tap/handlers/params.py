"""Reading TAP parameters from any request shape (DALI §2: GET query string, POST
urlencoded or multipart); names case-insensitive, values kept as sent."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from ..models.params import normalise

__all__ = ["read_parameters"]


async def read_parameters(request: Request) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    """Return (lower-cased name → values, multipart part name → bytes)."""
    pairs: list[tuple[str, str]] = list(request.query_params.multi_items())
    files: dict[str, bytes] = {}
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(max_files=100, max_fields=10_000)
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[name] = await value.read()
                    pairs.append((name, value.filename or name))
                else:
                    pairs.append((name, value))
    return normalise(pairs), files
