"""Indicator values: written per partition window, idempotently (delete the windows, insert), and
read back by range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from marketcov_dagster.lib.warehouse.core import WarehouseCore
from marketcov_dagster.lib.warehouse.schema import INDICATOR_COLUMNS, indicator_values


class IndicatorStore(WarehouseCore):
    def write_indicators(
        self, symbol: str, interval: str, windows: Sequence[tuple[int, int]], values: pd.DataFrame
    ) -> None:
        """Replace the indicator rows inside ``windows`` with ``values`` (``ts`` plus one column per
        indicator, NaN stored as NULL), in one transaction."""
        t = indicator_values
        cols = list(INDICATOR_COLUMNS)
        cells = values[cols].to_numpy(dtype=object, copy=True)
        cells[np.isnan(values[cols].to_numpy(dtype=np.float64))] = None  # NaN is stored as NULL
        rows = [(symbol, interval, ts, *row) for ts, row in zip(values["ts"].tolist(), cells.tolist(), strict=True)]
        names = ["symbol", "interval", "ts", *cols]
        with self.begin() as conn:
            if windows:  # one statement, executed once per window
                conn.execute(
                    t.delete().where(
                        t.c.symbol == symbol,
                        t.c.interval == interval,
                        t.c.ts >= sa.bindparam("lo"),
                        t.c.ts < sa.bindparam("hi"),
                    ),
                    [{"lo": lo, "hi": hi} for lo, hi in windows],
                )
            if rows:
                # plain DBAPI executemany: SQLAlchemy's per-row parameter processing costs more than the insert
                mark = "?" if self.dialect == "sqlite" else "%s"
                cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cur.executemany(
                        f"INSERT INTO indicator_values ({', '.join(names)}) VALUES ({', '.join([mark] * len(names))})",
                        rows,
                    )
                finally:
                    cur.close()

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
