"""Tornado handlers of the server extension (see the package docstring for the routes)."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

__all__ = ["copy_tutorials", "preview_from_votable", "schema_from_rows", "setup_handlers", "tutorials_source"]

SCHEMA_QUERY = (
    "SELECT t.schema_name, t.table_name, t.description AS table_description, c.column_name, c.datatype, "
    "c.unit, c.ucd, c.description AS column_description "
    "FROM TAP_SCHEMA.tables AS t JOIN TAP_SCHEMA.columns AS c ON c.table_name = t.table_name "
    "ORDER BY t.schema_name, t.table_name, c.column_index"
)
PREVIEW_ROWS = 100


def tap_url() -> str:
    url = os.environ.get("PACHON_TAP_URL") or os.environ.get("EXTERNAL_TAP_URL")
    if not url:
        raise tornado.web.HTTPError(503, "this server does not know the platform's TAP URL (PACHON_TAP_URL)")
    return url.rstrip("/")


def _token() -> str:
    token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("ACCESS_TOKEN")
    if not token:
        raise tornado.web.HTTPError(503, "this server has no hub token (JUPYTERHUB_API_TOKEN)")
    return token


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def preview_from_votable(data: bytes, limit: int = PREVIEW_ROWS) -> dict[str, Any]:
    """A VOTable answer as ``{columns: [{name, unit, datatype}], rows: [[...]], truncated}``."""
    from astropy.io.votable import parse_single_table

    table = parse_single_table(io.BytesIO(data)).to_table()
    columns = [
        {
            "name": name,
            "unit": str(table[name].unit) if table[name].unit else "",
            "datatype": str(table[name].dtype),
        }
        for name in table.colnames
    ]
    rows = []
    for row in table[:limit]:
        rows.append(
            [
                None if getattr(row[name], "mask", False) is True else _jsonable(row[name])
                for name in table.colnames
            ]
        )
    return {"columns": columns, "rows": rows, "row_count": len(table), "truncated": len(table) > limit}


def schema_from_rows(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """TAP_SCHEMA rows (see SCHEMA_QUERY) as schemas → tables → columns."""
    schemas: dict[str, dict[str, Any]] = {}
    for schema_name, table_name, table_description, column, datatype, unit, ucd, description in rows:
        schema = schemas.setdefault(schema_name, {"name": schema_name, "tables": {}})
        table = schema["tables"].setdefault(
            table_name, {"name": table_name, "description": table_description or "", "columns": []}
        )
        table["columns"].append(
            {
                "name": column,
                "datatype": datatype or "",
                "unit": unit or "",
                "ucd": ucd or "",
                "description": description or "",
            }
        )
    return [{"name": s["name"], "tables": list(s["tables"].values())} for s in schemas.values()]


def tutorials_source() -> Path | None:
    """Where the tutorial notebooks are: ``PACHON_TUTORIALS_DIR`` or the source tree's ``notebooks/``."""
    explicit = os.environ.get("PACHON_TUTORIALS_DIR")
    if explicit:
        return Path(explicit)
    import pachon

    candidate = Path(pachon.__file__).resolve().parents[2] / "notebooks"
    return candidate if candidate.is_dir() else None


def copy_tutorials(source: Path, home: Path) -> list[str]:
    """Copy every ``*.ipynb`` of ``source`` into ``home/tutorials`` unless already there; return new names."""
    target = home / "tutorials"
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted(source.glob("*.ipynb")):
        destination = target / notebook.name
        if not destination.exists():
            shutil.copyfile(notebook, destination)
            copied.append(f"tutorials/{notebook.name}")
    return copied


class _Base(APIHandler):  # type: ignore[misc]
    async def _sync(self, query: str, maxrec: int) -> bytes:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.post(
                f"{tap_url()}/sync",
                data={"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": query, "MAXREC": str(maxrec)},
                headers={"Authorization": f"Bearer {_token()}"},
            )
        if response.status_code != 200:
            raise tornado.web.HTTPError(
                response.status_code if response.status_code < 500 else 502, _dali_message(response.text)
            )
        return response.content


def _dali_message(text: str) -> str:
    marker = 'name="QUERY_STATUS" value="ERROR">'
    if marker in text:
        return text.split(marker, 1)[1].split("</INFO>", 1)[0].strip()
    return text[:500]


class InfoHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        import pachon

        self.finish(
            json.dumps(
                {
                    "version": pachon.__version__,
                    "platform_url": os.environ.get("PACHON_PLATFORM_URL", ""),
                    "tap_url": os.environ.get("PACHON_TAP_URL", ""),
                    "user": os.environ.get("JUPYTERHUB_USER", ""),
                }
            )
        )


class SchemaHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        data = await self._sync(SCHEMA_QUERY, 100_000)
        preview = preview_from_votable(data, limit=100_000)
        self.finish(json.dumps({"schemas": schema_from_rows(preview["rows"])}))


class QueryHandler(_Base):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.get_json_body() or {}
        query = str(body.get("query", "")).strip()
        if not query:
            raise tornado.web.HTTPError(
                400, "no query: write ADQL, e.g. SELECT TOP 10 * FROM TAP_SCHEMA.tables"
            )
        maxrec = int(body.get("maxrec", 1000))
        data = await self._sync(query, maxrec)
        self.finish(json.dumps(preview_from_votable(data, limit=int(body.get("preview", PREVIEW_ROWS)))))


class HistoryHandler(_Base):
    @tornado.web.authenticated
    async def get(self) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(
                f"{tap_url()}/history", params={"limit": self.get_argument("limit", "50")},
                headers={"Authorization": f"Bearer {_token()}"},
            )  # fmt: skip
        if response.status_code != 200:
            raise tornado.web.HTTPError(502, f"the TAP history answered HTTP {response.status_code}")
        self.finish(response.text)


class TutorialsHandler(_Base):
    @tornado.web.authenticated
    async def post(self) -> None:
        source = tutorials_source()
        if source is None:
            raise tornado.web.HTTPError(404, "no tutorials found (set PACHON_TUTORIALS_DIR)")
        root = Path(self.settings.get("server_root_dir", os.path.expanduser("~"))).expanduser()
        copied = copy_tutorials(source, root)
        self.finish(json.dumps({"copied": copied, "folder": "tutorials"}))


def setup_handlers(web_app: Any) -> None:
    base = web_app.settings["base_url"]
    routes = [
        ("pachon/info", InfoHandler),
        ("pachon/tap/schema", SchemaHandler),
        ("pachon/tap/query", QueryHandler),
        ("pachon/tap/history", HistoryHandler),
        ("pachon/tutorials", TutorialsHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, path), handler) for path, handler in routes])
