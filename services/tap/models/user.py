"""The identity a request acts as."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ANONYMOUS", "User"]


class User(BaseModel, frozen=True):
    """A user of the service; jobs and history entries are owned by ``name``."""

    name: str
    anonymous: bool = False


ANONYMOUS = User(name="anonymous", anonymous=True)
