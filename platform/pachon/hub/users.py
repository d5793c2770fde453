"""Accounts from the command line: create or update a NativeAuthenticator user in the hub database.

Why write the database directly: the first admin must exist before anyone can approve
sign-ups, and the hub need not be running for ``pachon user add``. NativeAuthenticator keeps
its users (bcrypt hash, approval flag) in the table ``users_info`` of the hub's own database,
which :func:`jupyterhub.orm.new_session_factory` creates (and stamps with the hub's schema
revision) when it does not exist yet. Admin rights are kept in ``admins.txt`` (read by the hub
config at start) and, when the hub runs, granted at once through its API.
"""

from __future__ import annotations

import re
from pathlib import Path

import bcrypt

from pachon.hub.config import USERNAME_PATTERN, admins_file, read_admins

__all__ = ["UserError", "add_user", "hub_db_url", "list_users"]


class UserError(ValueError):
    """A user name or password that the hub would refuse; the message says why."""


def hub_db_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"


def _session(state_dir: Path):  # type: ignore[no-untyped-def]
    import nativeauthenticator.orm  # noqa: F401 - registers users_info on the hub's ORM base
    from jupyterhub import orm

    state_dir.mkdir(parents=True, exist_ok=True)
    return orm.new_session_factory(hub_db_url(state_dir))()


def add_user(state_dir: Path, name: str, password: str, *, admin: bool = False, min_length: int = 8) -> str:
    """Create (approved) or update the account ``name``; return ``"created"`` or ``"updated"``.

    The password is stored only as a bcrypt hash, exactly as NativeAuthenticator does on sign-up.
    """
    from nativeauthenticator.orm import UserInfo

    if not re.match(USERNAME_PATTERN, name):
        raise UserError(
            f"invalid user name {name!r}: use 1-32 lower-case letters, digits, '-' or '_', starting with a letter"
        )
    if len(password) < min_length:
        raise UserError(f"the password is too short: use at least {min_length} characters")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    db = _session(state_dir)
    try:
        info = UserInfo.find(db, name)
        if info is None:
            db.add(UserInfo(username=name, password=hashed, is_authorized=True))
            outcome = "created"
        else:
            info.password = hashed
            info.is_authorized = True
            outcome = "updated"
        db.commit()
    finally:
        db.close()
    if admin:
        admins = read_admins(state_dir)
        if name not in admins:
            admins.add(name)
            admins_file(state_dir).write_text("".join(f"{a}\n" for a in sorted(admins)))
    return outcome


def list_users(state_dir: Path) -> list[tuple[str, bool, bool]]:
    """(name, approved, admin) of every NativeAuthenticator account."""
    from nativeauthenticator.orm import UserInfo

    admins = read_admins(state_dir)
    db = _session(state_dir)
    try:
        return [(u.username, bool(u.is_authorized), u.username in admins) for u in db.query(UserInfo).all()]
    finally:
        db.close()
