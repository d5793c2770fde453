"""``pachon token create|list|revoke``: hub API tokens for TOPCAT, scripts and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

token_app = typer.Typer(
    help="Create, list and revoke a user's hub API tokens (the platform must be running).\n\n"
    "Example: pachon token create alice --scopes custom:tap:read --repo demo/repo",
    no_args_is_help=True,
)

RepoOption = Annotated[Path, typer.Option(help="The data repository the platform serves.")]


@token_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The user who owns the token.")],
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes",
            help="Scopes of the token (repeat, or separate with commas); default every permission of the "
            "user. Pachón's: custom:tap:read, custom:userdb:write, custom:images:read, custom:alerts:read, "
            "custom:files:write, custom:portal:use.",
        ),
    ] = None,
    note: Annotated[str, typer.Option(help="What the token is for (shown on the token page).")] = "",
    expires_in: Annotated[int | None, typer.Option(help="Lifetime in seconds; default never.")] = None,
    repo: RepoOption = Path("repo"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the token's record as JSON.")] = False,
) -> None:
    """Create a token and print it (shown once; store it like a password).

    Examples:
      pachon token create alice --repo demo/repo
      pachon token create alice --scopes custom:tap:read --note topcat --repo demo/repo
      TOKEN=$(pachon token create alice --scopes custom:tap:read --repo demo/repo)
    """
    from pachon.hub.api import HubAdminClient, HubAPIError

    wanted = [s.strip() for item in scopes for s in item.split(",") if s.strip()] if scopes else None
    try:
        with HubAdminClient.for_repo(repo) as hub:
            record = hub.create_token(name, scopes=wanted, note=note, expires_in=expires_in)
    except (FileNotFoundError, HubAPIError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(record, indent=2) if as_json else record["token"])


@token_app.command("list")
def list_(name: Annotated[str, typer.Argument(help="The user.")], repo: RepoOption = Path("repo")) -> None:
    """List a user's tokens (ids, notes, scopes; never the secrets).

    Example: pachon token list alice --repo demo/repo
    """
    from pachon.hub.api import HubAdminClient, HubAPIError

    try:
        with HubAdminClient.for_repo(repo) as hub:
            tokens = hub.list_tokens(name)
    except (FileNotFoundError, HubAPIError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for token in tokens:
        typer.echo(
            f"{token['id']:<8} {token.get('note') or '':<30} {' '.join(sorted(token.get('scopes', [])))}"
        )


@token_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The user.")],
    token_id: Annotated[str, typer.Argument(help="The token id from `pachon token list`.")],
    repo: RepoOption = Path("repo"),
) -> None:
    """Revoke a token; services refuse it within seconds (their check cache is short).

    Example: pachon token revoke alice a12 --repo demo/repo
    """
    from pachon.hub.api import HubAdminClient, HubAPIError

    try:
        with HubAdminClient.for_repo(repo) as hub:
            hub.revoke_token(name, token_id)
    except (FileNotFoundError, HubAPIError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"revoked token {token_id} of {name}")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
