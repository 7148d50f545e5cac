"""Engines and migrations. SQLite in WAL mode by default; the URL is a setting, so PostgreSQL plugs in later."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event

_MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # metadata commits are the commit points of the store
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        # pysqlite's own transaction handling defers BEGIN; take control so that every transaction is
        # BEGIN IMMEDIATE: writers serialize up front instead of failing on lock upgrade.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Reads take no write lock (WAL readers never block); writes lock up front.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine, tree: str, revision: str = "head") -> None:
    """Bring the database to the newest schema of one migration tree ("identity" or "region"); an older `revision`
    only for tests of the upgrade path."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS / tree))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only connection: a deferred transaction, so it never waits for or blocks a writer."""
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        yield conn


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return json.loads(text) if text else {}
