"""Bars for anyone downstream: an asset that depends on ``ohlcv/<interval>/<SYMBOL>`` receives
that partition's (or partition range's) bars as a DataFrame, read from the warehouse, with no
SQL of its own. The OHLCV assets keep writing through the ingest path: this IO manager only
loads."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd

from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.barsio import read_sessions
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.symbols import key_part_to_symbol

BARS_IO_MANAGER_KEY = "ohlcv_bars"


class OhlcvBarsIOManager(dg.ConfigurableIOManager):
    """Loads an OHLCV asset's bars (columns ``ts`` (UTC), ``open``, ``high``, ``low``, ``close``,
    ``volume``, oldest first) for the partitions the downstream step asks for."""

    warehouse: WarehouseResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the {BARS_IO_MANAGER_KEY} IO manager only loads OHLCV bars; "
                "OHLCV assets write through the ingest path"
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if len(key.path) != 3 or key.path[0] != "ohlcv":
            raise ValueError(f"{key.to_user_string()} is not an OHLCV asset (ohlcv/<interval>/<SYMBOL>)")
        _, interval, part = key.path
        symbol = key_part_to_symbol(part)
        metadata = context.upstream_output.definition_metadata if context.upstream_output else {}
        calendar = get_calendar(str(_plain(metadata.get("calendar"))))
        sessions = [date.fromisoformat(k) for k in context.asset_partition_keys] if context.has_asset_partitions else []
        df = read_sessions(self.warehouse.get(), calendar, symbol, interval, sessions)
        context.log.info(f"{key.to_user_string()}: {len(df)} bar(s) of {len(sessions)} session(s)")
        return df


def _plain(value: object) -> object:
    return getattr(value, "value", value)  # metadata may arrive as a MetadataValue
