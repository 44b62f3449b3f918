"""The catalog's database core: the URL and its dialect, one connection per thread and process,
transactions that turn vendor errors into ``CatalogUnavailable`` or ``CatalogError``, and the
cursor that runs the same ``?``-style SQL on SQLite and PostgreSQL. Every aggregate's store
(photos.py, duplicates.py, reprocess_jobs.py, idempotency.py) is a ``SqlDatabase``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

from media_pipeline.errors import CatalogError, CatalogUnavailable


class SqlDatabase:
    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.url = url
        self.dialect = "sqlite" if parsed.scheme == "sqlite" else "postgresql"
        if self.dialect == "sqlite":
            path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else parsed.path
            self.sqlite_path = path or ":memory:"
            if self.sqlite_path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(self.sqlite_path)), exist_ok=True)
        self._local = threading.local()

    # ------------------------------------------------------------------ connections
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def close(self) -> None:
        self._drop_connection()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator["Cursor"]:
        """One transaction. Vendor errors become ``CatalogUnavailable`` (connection, lock) or ``CatalogError``.

        On SQLite a writing transaction takes the write lock up front (no deadlock between two
        readers that both want to upgrade); a read-only one does not, so polling never blocks workers.
        """
        try:
            conn = self._connection()
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Cursor(conn, self.dialect)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            else:
                with conn.transaction():
                    yield Cursor(conn, self.dialect)
        except (CatalogError, KeyboardInterrupt):
            raise
        except Exception as exc:
            transient = self._is_transient(exc)
            if transient:
                self._drop_connection()
                raise CatalogUnavailable(f"catalog unavailable: {exc}") from exc
            if isinstance(exc, (sqlite3.Error,)) or type(exc).__module__.startswith("psycopg"):
                raise CatalogError(f"catalog error: {exc}") from exc
            raise

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, sqlite3.OperationalError):
            return "locked" in str(exc) or "busy" in str(exc) or "unable to open" in str(exc)
        if type(exc).__module__.startswith("psycopg"):
            import psycopg

            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) or getattr(exc, "sqlstate", "") in ("40001", "40P01")
        return False

    def check(self) -> None:
        with self._tx(write=False) as cur:
            cur.fetchall("SELECT 1")


class Cursor:
    """Runs ``?``-style SQL on either driver; ``execute`` answers the affected row count."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.conn.execute(self._sql(sql), params)
        return cur.rowcount

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> int:
        """Runs ``sql`` once per row; answers the rows affected in all (conflicts skipped are not counted)."""
        if not rows:
            return 0
        if self.dialect == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
                return max(cur.rowcount, 0)
        return max(self.conn.executemany(sql, rows).rowcount, 0)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(self._sql(sql), params).fetchall())


def dump_json(value: Any) -> str | None:
    """A value for a TEXT column; keys sorted, so equal values are stored as equal text."""
    return None if value is None else json.dumps(value, sort_keys=True)
