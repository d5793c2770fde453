"""``pachon up`` / ``pachon down`` / ``pachon status``: run the embedded platform."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

__all__ = ["register"]


def _state_file(repo: Path) -> Path:
    return repo / "state" / "up.json"


def up(
    repo: Annotated[Path, typer.Option(help="The data repository to serve.")] = Path("repo"),
    port: Annotated[int, typer.Option(help="The one public port.")] = 8000,
    host: Annotated[
        str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    catalog: Annotated[
        str | None, typer.Option(help="Catalog URL; default the repo's DuckDB catalog.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Start everything, verify it answers, then stop (for CI and tests)."),
    ] = False,
) -> None:
    """Start the whole embedded platform and keep it running until Ctrl-C or `pachon down`.

    JupyterHub takes the public port (its proxy is the only thing bound to --host); TAP and the
    service discovery run on loopback behind it at /services/<name>/ with hub login. Create the
    first admin with `pachon user add NAME --admin --repo REPO`.

    Prepares the repo's catalog (empty DP1 and ObsCore schemas; simulator truth as schema
    `sim`), starts every service that exists, waits until each is healthy, prints where to
    look, and restarts a service that crashes.

    Example: pachon up --repo demo/repo --port 8000
    """
    from pachon.core.repo import DataRepository
    from pachon.up.platform import plan_platform, prepare_catalog
    from pachon.up.supervisor import Supervisor, read_state

    DataRepository.open(repo)  # clear error if the repo is missing
    running = read_state(_state_file(repo))
    if running:
        typer.echo(
            f"error: the platform already runs for {repo} (pid {running['pid']}); `pachon down --repo {repo}`",
            err=True,
        )
        raise typer.Exit(2)
    plan = plan_platform(repo, host=host, port=port, catalog_url=catalog)
    for change in prepare_catalog(repo, plan.catalog_url):
        typer.echo(f"catalog: added {change}")
    if not DataRepository.open(repo).has("truth_stars"):
        plan.notes.append(
            f"the catalog holds no data yet (only TAP_SCHEMA and empty DP1 tables): fill it with "
            f"`pachon simulate --repo {repo} --preset tiny`, then restart `pachon up` to publish the truth tables"
        )
    supervisor = Supervisor(
        plan.components, state_file=_state_file(repo), log_dir=repo / "state" / "logs", checks=plan.checks
    )
    supervisor.install_signal_handlers()
    try:
        supervisor.start()
        _banner(plan.components, plan.notes, repo)
        if check:
            _smoke_test(plan)
            typer.echo("check passed: every component answered; stopping")
            return
        supervisor.supervise()
    finally:
        supervisor.stop()


def _banner(components: list, notes: list[str], repo: Path) -> None:  # type: ignore[type-arg]
    from pachon.hub.config import read_admins
    from pachon.hub.spec import hub_state_dir

    hub = next((c for c in components if c.name == "hub"), None)
    typer.echo("")
    typer.echo("Pachón is up. Where to look:")
    for component in components:
        typer.echo(f"  {component.name:<10} {component.public_url}")
    if hub is not None:
        base = hub.public_url.rstrip("/")
        typer.echo("")
        typer.echo(f"Open {base}/login in a browser.")
        if not read_admins(hub_state_dir(repo)):
            typer.echo(f"  No admin yet: create one with `pachon user add NAME --admin --repo {repo}`.")
        typer.echo(f"  New users sign up at {base}/signup; an admin approves them at {base}/authorize.")
        typer.echo(
            f"  Tokens for TOPCAT or scripts: {base}/token (or `pachon token create NAME --repo {repo}`)."
        )
    tap = next((c for c in components if c.name == "tap"), None)
    if tap is not None:
        typer.echo("")
        typer.echo("From a notebook on the hub:  import pachon.client; svc = pachon.client.tap()")
        typer.echo(f"From elsewhere (with a token): pyvo.dal.TAPService('{tap.public_url}', session=...)")
        typer.echo("  svc.search('SELECT TOP 5 * FROM TAP_SCHEMA.tables').to_table()")
    if any(c.name == "alerts" for c in components):
        typer.echo("")
        typer.echo(
            f"Alert stream: `pachon alerts tail --repo {repo} --from-beginning` (or AlertConsumer in a notebook)"
        )
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"logs: {repo / 'state' / 'logs'}   status: pachon status --repo {repo}   stop: Ctrl-C")
    typer.echo("")


def _smoke_test(plan: Any) -> None:
    for component in plan.components:
        if not component.healthy(timeout=10):
            raise RuntimeError(f"{component.name} stopped answering at {component.health_url}")
    for name, (_url, health) in plan.checks.items():
        if httpx.get(health, timeout=10).status_code != 200:
            raise RuntimeError(f"{name} does not answer at {health}")
    tap = next((c for c in plan.components if c.name == "tap"), None)
    if tap is not None:
        response = httpx.get(f"{tap.public_url}/availability", timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"TAP availability failed through the proxy: HTTP {response.status_code}")
        typer.echo("TAP answered /availability through the hub's proxy")
        _check_query(plan, tap.public_url)


def _check_query(plan: Any, tap_url: str) -> None:
    """Run one authenticated TAP query through the proxy with a short-lived token of a check account."""
    from pachon.hub.api import HubAdminClient

    repo = Path(plan.spec.repo)
    with HubAdminClient.for_repo(repo) as hub:
        record = hub.create_token(
            "pachon-check", scopes=["custom:tap:read"], note="pachon up --check", expires_in=300
        )
        try:
            response = httpx.post(
                f"{tap_url}/sync",
                data={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM TAP_SCHEMA.tables"},
                headers={"Authorization": f"Bearer {record['token']}"},
                timeout=60,
            )
        finally:
            hub.revoke_token("pachon-check", record["id"])
    if response.status_code != 200 or 'value="OK"' not in response.text:
        raise RuntimeError(
            f"TAP query with a hub token failed: HTTP {response.status_code}: {response.text[:500]}"
        )
    typer.echo("TAP answered a query on TAP_SCHEMA.tables with a hub token")


def down(
    repo: Annotated[Path, typer.Option(help="The data repository being served.")] = Path("repo"),
) -> None:
    """Stop a platform started with `pachon up` (it shuts every component down cleanly).

    Example: pachon down --repo demo/repo
    """
    from pachon.up.supervisor import read_state

    state = read_state(_state_file(repo))
    if state is None:
        typer.echo(f"nothing runs for {repo}")
        return
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and read_state(_state_file(repo)) is not None:
        time.sleep(0.2)
    typer.echo(f"stopped the platform for {repo}")


def status(
    repo: Annotated[Path, typer.Option(help="The data repository being served.")] = Path("repo"),
) -> None:
    """Show every component's health, URL and restart count.

    Example: pachon status --repo demo/repo
    """
    from pachon.up.supervisor import read_state

    state = read_state(_state_file(repo))
    if state is None:
        typer.echo(f"nothing runs for {repo}; start it with `pachon up --repo {repo}`")
        raise typer.Exit(1)
    typer.echo(f"supervisor pid {state['pid']}")
    for name, info in state["components"].items():
        try:
            ok = httpx.get(info["health"], timeout=3).status_code == 200
        except httpx.HTTPError:
            ok = False
        typer.echo(
            f"  {name:<10} {'healthy' if ok else 'DOWN':<8} {info['url']}  restarts={info['restarts']}"
        )
    _hub_managed_status(repo)


def _hub_managed_status(repo: Path) -> None:
    """Services the hub itself runs (the idle culler), as the hub reports them."""
    from pachon.hub.api import HubAdminClient, HubAPIError

    try:
        with HubAdminClient.for_repo(repo) as hub:
            services = hub.services()
    except (FileNotFoundError, HubAPIError) as exc:
        typer.echo(f"  (hub-managed services unknown: {exc})")
        return
    for name, model in sorted(services.items()):
        if model.get("command"):
            state = "running" if model.get("pid") else "DOWN"
            typer.echo(f"  {name:<10} {state:<8} managed by the hub (pid {model.get('pid') or '-'})")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
