"""SQLAlchemy repositories: the only code that writes SQL for the services."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine, Table, and_, delete, insert, select, update

from blockvault.db.engine import reading
from blockvault.db.mapping import from_row, to_row
from blockvault.errors import Conflict

T = TypeVar("T")


class TableRepo(Generic[T]):
    """Get/insert/update/list for one dataclass stored in one table, keyed by `id`.

    `save(obj, expect=...)` is a compare-and-set: it updates only if the stored row still has the expected
    column values, so two concurrent changes of one resource cannot both win (optimistic concurrency).
    """

    def __init__(self, engine: Engine, table: Table, cls: type[T]) -> None:
        self.engine, self.table, self.cls = engine, table, cls

    def get(self, ident: str, conn: Connection | None = None) -> T | None:
        stmt = select(self.table).where(self.table.c.id == ident)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with reading(self.engine) as c:
                row = c.execute(stmt).first()
        return None if row is None else from_row(self.cls, row)

    def insert(self, obj: T, conn: Connection | None = None) -> None:
        stmt = insert(self.table).values(**to_row(obj, self.table))
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.engine.begin() as c:
                c.execute(stmt)

    def save(self, obj: T, conn: Connection | None = None, *, expect: dict[str, Any] | None = None) -> None:
        row = to_row(obj, self.table)
        cond = [self.table.c.id == row["id"]]
        for col, value in (expect or {}).items():
            cond.append(self.table.c[col].is_(None) if value is None else self.table.c[col] == value)
        stmt = update(self.table).where(and_(*cond)).values(**row)
        if conn is not None:
            result = conn.execute(stmt)
        else:
            with self.engine.begin() as c:
                result = c.execute(stmt)
        if result.rowcount != 1:
            raise Conflict(kind=self.table.name, ident=row["id"], reason="it was changed concurrently; try again")

    def delete(self, ident: str, conn: Connection) -> None:
        conn.execute(delete(self.table).where(self.table.c.id == ident))

    def find(self, *conditions: Any, order_by: Sequence[Any] = (), conn: Connection | None = None) -> list[T]:
        stmt = select(self.table).where(*conditions)
        if order_by:
            stmt = stmt.order_by(*order_by)
        if conn is not None:
            rows = conn.execute(stmt).all()
        else:
            with reading(self.engine) as c:
                rows = c.execute(stmt).all()
        return [from_row(self.cls, r) for r in rows]
