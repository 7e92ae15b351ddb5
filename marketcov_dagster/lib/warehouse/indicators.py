"""Indicator values: written per partition window, idempotently (delete the windows, insert), and
read back by range."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
import pandas as pd
import sqlalchemy as sa

from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import INDICATOR_COLUMNS, indicator_values


class IndicatorStore(WarehouseCore):
    def write_indicators(
        self, symbol: str, interval: str, windows: Sequence[tuple[int, int]], ts: np.ndarray, values: np.ndarray
    ) -> None:
        """Replace the indicator rows inside ``windows`` with one row per ``ts`` (``values``: one
        column per ``INDICATOR_COLUMNS`` entry, NaN stored as NULL), in one transaction."""
        if self.dialect == "sqlite":  # SQLite binds a NaN as NULL
            cells = values.T.tolist()
        else:
            cells = [[None if v != v else v for v in column] for column in values.T.tolist()]
        rows = list(zip(repeat(symbol), repeat(interval), ts.tolist(), *cells))
        mark = self.mark
        names = [f'"{n}"' for n in ("symbol", "interval", "ts", *INDICATOR_COLUMNS)]
        insert = f"INSERT INTO indicator_values ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})"
        with self.begin() as conn:
            # plain DBAPI: SQLAlchemy's per-row parameter processing costs more than the statements
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cur.executemany(
                    f"DELETE FROM indicator_values WHERE {self.asset_sql} AND ts >= {mark} AND ts < {mark}",
                    [(symbol, interval, lo, hi) for lo, hi in windows],
                )
                cur.executemany(insert, rows)
            finally:
                cur.close()

    def bars_without_indicators(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> int:
        """How many stored bars in ``[start_ms, end_ms)`` have no indicator row: never computed,
        as against computed and still warming up (a row of NULLs)."""
        m = self.mark
        sql = (
            f'SELECT COUNT(*) FROM bars b WHERE b.symbol = {m} AND b."interval" = {m} AND b.ts >= {m} AND b.ts < {m} '
            "AND NOT EXISTS (SELECT 1 FROM indicator_values i "
            'WHERE i.symbol = b.symbol AND i."interval" = b."interval" AND i.ts = b.ts)'
        )
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql(sql, (symbol, interval, start_ms, end_ms)).scalar_one())

    def read_indicators(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        t = indicator_values
        q = (
            sa.select(t.c.ts, *(t.c[c] for c in INDICATOR_COLUMNS))
            .where(t.c.symbol == symbol, t.c.interval == interval, t.c.ts >= start_ms, t.c.ts < end_ms)
            .order_by(t.c.ts)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        df = pd.DataFrame(rows, columns=["ts", *INDICATOR_COLUMNS])
        df["ts"] = df["ts"].astype("int64")
        for c in INDICATOR_COLUMNS:
            df[c] = df[c].astype("float64")
        return df
