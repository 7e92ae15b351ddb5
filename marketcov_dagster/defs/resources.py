"""Dagster resources: the warehouse and the vendor chain."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.vendors.base import Vendor
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse, default_warehouse_url

_WAREHOUSES: dict[str, Warehouse] = {}


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The bar warehouse. ``url`` empty means ``MARKETCOV_WAREHOUSE_URL`` or the SQLite default."""

    url: str = ""

    def get(self) -> Warehouse:
        url = self.url or default_warehouse_url()
        # one engine per URL per process: steps of an in-process run share it
        if url not in _WAREHOUSES:
            _WAREHOUSES[url] = Warehouse(url)
        return _WAREHOUSES[url]


class VendorsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Builds the vendor chain for an asset from the names in the universe config."""

    def chain(self, names: Sequence[str], calendar: TradingCalendar) -> list[Vendor]:
        vendors: list[Vendor] = []
        for name in names:
            if name == "synthetic":
                vendors.append(SyntheticVendor(lambda _symbol: calendar))
            else:
                raise ValueError(f"unknown vendor {name!r}")
        return vendors
