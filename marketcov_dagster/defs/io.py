"""Bars for anyone downstream: an asset that depends on ``ohlcv/<interval>/<SYMBOL>`` receives
that partition's (or partition range's) bars as a DataFrame, read from the warehouse, with no
SQL of its own. The OHLCV assets keep writing through the ingest path: this IO manager only
loads.

Raw by default, as stored. ``adjust`` (``split`` or ``all``), set on the IO manager or per input
(``dg.AssetIn(key, metadata={"adjust": "all"})``), gives back-adjusted bars into the basis of the
last session loaded, with ``price_factor`` and ``volume_factor`` columns (raw = adjusted / factor)
and the actions applied in ``df.attrs`` (``adjust``, ``as_of``, ``actions``, ``skipped``).

A partition whose latest checks failed is never loaded: the downstream step fails naming it and
the check (derived data only from verified sources, ``lib/sources.py``)."""

from __future__ import annotations

from datetime import date
from typing import cast

import dagster as dg
import pandas as pd

from marketcov_dagster.defs.resources import WarehouseResource
from marketcov_dagster.lib.barsio import as_frame, read_sessions, read_sessions_ms
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.factors import ADJUST_MODES, Adjust
from marketcov_dagster.lib.prices.ledger import adjust_frame
from marketcov_dagster.lib.sources import require_verified
from marketcov_dagster.lib.symbols import key_part_to_symbol

BARS_IO_MANAGER_KEY = "ohlcv_bars"


class OhlcvBarsIOManager(dg.ConfigurableIOManager):
    """Loads an OHLCV asset's bars (columns ``ts`` (UTC), ``open``, ``high``, ``low``, ``close``,
    ``volume``, oldest first) for the partitions the downstream step asks for."""

    warehouse: WarehouseResource
    adjust: str = "none"  # none | split | all; an input's metadata "adjust" overrides it

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
        adjust = str(_plain((context.definition_metadata or {}).get("adjust", self.adjust)))
        if adjust not in ADJUST_MODES:
            raise ValueError(f"{key.to_user_string()}: adjust {adjust!r} is not one of {', '.join(ADJUST_MODES)}")
        wh = self.warehouse.get()
        # derived data is never built from bars whose latest checks failed: the step fails, naming them
        require_verified(wh, symbol, interval, [d.isoformat() for d in sessions], f"{key.to_user_string()} as input")
        if adjust == "none":
            df = read_sessions(wh, calendar, symbol, interval, sessions)
        else:
            raw = read_sessions_ms(wh, calendar, symbol, interval, sessions)
            adjusted = adjust_frame(wh, calendar, symbol, interval, raw, cast(Adjust, adjust))
            df = as_frame(adjusted.bars)
            df.attrs.update(adjusted.header())
        context.log.info(f"{key.to_user_string()}: {len(df)} bar(s) of {len(sessions)} session(s), adjust {adjust}")
        return df


def _plain(value: object) -> object:
    return getattr(value, "value", value)  # metadata may arrive as a MetadataValue
