"""Alembic trees against db/tables.py: the migrated schema is exactly the declared one, for both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select, text

from blockvault.db import tables
from blockvault.db.engine import make_engine, sqlite_url, upgrade

TREES: dict[str, tuple[MetaData, str]] = {
    "identity": (tables.identity_metadata, "identity_0001"),
    "region": (tables.region_metadata, "region_0002"),
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(sqlite_url(tmp_path / "m.db"))
    yield engine
    engine.dispose()


def _schema(engine: Engine) -> dict[str, list[str]]:
    inspector = inspect(engine)
    return {
        name: [c["name"] for c in inspector.get_columns(name)]
        for name in inspector.get_table_names()
        if name != "alembic_version"
    }


def _versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_upgrade_creates_exactly_the_declared_tables_and_columns(engine: Engine, tree: str) -> None:
    metadata, head = TREES[tree]
    upgrade(engine, tree)
    expected = {name: [c.name for c in table.columns] for name, table in metadata.tables.items()}
    assert _schema(engine) == expected
    assert _versions(engine) == [head]


def test_the_two_trees_do_not_share_tables() -> None:
    assert not set(tables.identity_metadata.tables) & set(tables.region_metadata.tables)


@pytest.mark.parametrize("tree", sorted(TREES))
def test_upgrade_twice_is_a_no_op(engine: Engine, tree: str) -> None:
    _, head = TREES[tree]
    upgrade(engine, tree)
    before = _schema(engine)
    upgrade(engine, tree)
    assert _schema(engine) == before
    assert _versions(engine) == [head]


ROWS: dict[str, tuple[Table, dict[str, object]]] = {
    "identity": (
        tables.tenancies,
        {"id": "ocid1.tenancy.oc1..aaaat", "name": "t", "home_region": "us-ashburn-1", "time_created": "2025"},
    ),
    "region": (
        tables.vaults,
        {
            "id": "ocid1.vault.oc1.iad.p.aaaav",
            "compartment_id": "ocid1.compartment.oc1..aaaac",
            "display_name": "v",
            "vault_type": "DEFAULT",
            "state": "ACTIVE",
            "time_created": "2025",
            "freeform_tags": "{}",
            "defined_tags": "{}",
        },
    ),
}


@pytest.mark.parametrize("tree", sorted(TREES))
def test_upgrade_again_keeps_existing_rows(engine: Engine, tree: str) -> None:
    table, row = ROWS[tree]
    upgrade(engine, tree)
    with engine.begin() as conn:
        conn.execute(insert(table).values(**row))
    upgrade(engine, tree)
    with engine.connect() as conn:
        assert [dict(r._mapping) for r in conn.execute(select(table))] == [
            {c.name: row.get(c.name) for c in table.columns}
        ]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_autogenerate_finds_no_difference(engine: Engine, tree: str) -> None:
    metadata, _ = TREES[tree]
    upgrade(engine, tree)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_autogenerate_notices_a_missing_table(engine: Engine) -> None:
    """The comparison above is not vacuous: an empty database differs from the declared schema."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.region_metadata)
    added = {d[1].name for d in diff if d[0] == "add_table"}
    assert added == set(tables.region_metadata.tables)


def test_a_v1_region_database_upgrades_to_head_keeping_its_rows(engine: Engine, tmp_path: Path) -> None:
    """A data dir made by the previous release (revision 0001) upgrades in place: rows stay, new columns are NULL."""
    upgrade(engine, "region", "region_0001")
    assert "volume_replicas" not in inspect(engine).get_table_names()
    assert "expiration_time" not in [c["name"] for c in inspect(engine).get_columns("backups")]
    table, row = ROWS["region"]
    with engine.begin() as conn:
        conn.execute(insert(table).values(**row))
    upgrade(engine, "region")
    assert _versions(engine) == ["region_0002"]
    expected = {name: [c.name for c in t.columns] for name, t in tables.region_metadata.tables.items()}
    assert _schema(engine) == expected
    with engine.connect() as conn:
        (got,) = [dict(r._mapping) for r in conn.execute(select(table))]
    assert got == {c.name: row.get(c.name) for c in table.columns}
    assert got["source_vault_id"] is None
