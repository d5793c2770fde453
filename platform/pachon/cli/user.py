"""``pachon user add|list``: accounts of the embedded platform's hub (NativeAuthenticator)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

user_app = typer.Typer(
    help="Manage hub accounts (sign-up with admin approval; passwords stored as bcrypt hashes).\n\n"
    "Example: pachon user add alice --admin --repo demo/repo",
    no_args_is_help=True,
)


@user_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="User name: lower-case letters, digits, '-', '_'.")],
    repo: Annotated[Path, typer.Option(help="The data repository the platform serves.")] = Path("repo"),
    admin: Annotated[
        bool, typer.Option("--admin", help="Make the user an admin (approves sign-ups).")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Create an approved account (or reset its password); prompts for the password.

    Works before the first `pachon up` (creating the hub database) and while it runs.

    Examples:
      pachon user add alice --admin --repo demo/repo
      echo "$PASSWORD" | pachon user add bob --password-stdin --repo demo/repo
    """
    from pachon.hub.settings import load_hub_settings
    from pachon.hub.spec import hub_state_dir
    from pachon.hub.users import UserError, add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    settings = load_hub_settings()
    state = hub_state_dir(repo)
    try:
        outcome = add_user(state, name, password, admin=admin, min_length=settings.minimum_password_length)
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    note = _grant_admin_now(repo, name) if admin else ""
    typer.echo(f"{outcome} user {name}{' (admin)' if admin else ''}{note}")


def _grant_admin_now(repo: Path, name: str) -> str:
    """If the hub runs, make the user an admin right away (else the next start reads admins.txt)."""
    from pachon.hub.api import HubAdminClient, HubAPIError

    try:
        with HubAdminClient.for_repo(repo) as hub:
            hub.ensure_user(name, admin=True)
    except (FileNotFoundError, HubAPIError):
        return ""
    return "; admin rights granted on the running hub"


@user_app.command("list")
def list_(
    repo: Annotated[Path, typer.Option(help="The data repository the platform serves.")] = Path("repo"),
) -> None:
    """List accounts, whether they are approved, and admins.

    Example: pachon user list --repo demo/repo
    """
    from pachon.hub.spec import hub_state_dir
    from pachon.hub.users import list_users

    for name, approved, is_admin in list_users(hub_state_dir(repo)):
        flags = (
            ", ".join(f for f, on in (("approved", approved), ("admin", is_admin)) if on)
            or "waiting for approval"
        )
        typer.echo(f"{name:<24} {flags}")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
