"""Loading many rows at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert


def insert_rows(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (values in `columns` order) in the connection's transaction.

    PostgreSQL gets COPY, faster than an executemany for the thousands of rows of a big job
    (bench/RESULTS.md), and that time comes before the job's first API call. Values go in as
    they are, past the columns' Python-side types: give aware UTC datetimes.
    """
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        driver = connection.connection.driver_connection  # psycopg's, in this transaction
        assert driver is not None
        with driver.cursor().copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    connection.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
