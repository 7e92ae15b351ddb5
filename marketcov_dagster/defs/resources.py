"""Dagster resources: the warehouse, the vendor chain and email."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from marketcov_dagster.lib.alerts import DEFAULT_SUBJECT_PREFIX, AlertStyle
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.mailer import SmtpSettings, parse_recipients
from marketcov_dagster.lib.universe import VendorSettings
from marketcov_dagster.lib.vendors.base import Vendor
from marketcov_dagster.lib.vendors.registry import Credentials, make_chain
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
    """Vendor keys and endpoints. Keys are given only as ``dg.EnvVar`` (see ``build``); an empty
    key means the vendor is not configured, and it then fails without being called."""

    alpaca_key_id: str = ""
    alpaca_secret_key: str = ""
    polygon_api_key: str = ""
    alpaca_base_url: str = ""
    binance_base_url: str = ""
    polygon_base_url: str = ""

    def chain(
        self,
        names: Sequence[str],
        calendar: TradingCalendar,
        settings: Mapping[str, VendorSettings],
        warehouse: Warehouse,
    ) -> list[Vendor]:
        credentials = Credentials(
            alpaca_key_id=self.alpaca_key_id,
            alpaca_secret_key=self.alpaca_secret_key,
            polygon_api_key=self.polygon_api_key,
            base_urls={
                "alpaca": self.alpaca_base_url,
                "binance": self.binance_base_url,
                "polygon": self.polygon_base_url,
            },
        )
        return make_chain(names, calendar, settings, warehouse, credentials)


class EmailResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """SMTP settings and alert style. Every field comes from a ``MARKETCOV_SMTP_*`` /
    ``MARKETCOV_ALERT_*`` environment variable as a ``dg.EnvVar`` (see ``build``); with no host or
    no recipients email is off, and alerts wait in the outbox."""

    smtp_host: str = ""
    smtp_port: int = 0
    smtp_security: str = "none"
    smtp_user: str = ""
    smtp_password: str = ""
    sender: str = "marketcov@localhost"
    recipients: str = ""
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    ui_url: str = "http://127.0.0.1:3000"

    def settings(self) -> SmtpSettings:
        return SmtpSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security.lower(),
            username=self.smtp_user,
            password=self.smtp_password,
            sender=self.sender,
            recipients=parse_recipients(self.recipients),
        )

    def style(self) -> AlertStyle:
        return AlertStyle(ui_url=self.ui_url, subject_prefix=self.subject_prefix)
