"""The corporate-actions ledger against loopback servers speaking Polygon's v3 splits and dividends
and Alpaca's corporate actions as documented: a forward split, a reverse split and dividends;
vendors that disagree; an action withdrawn; an adjusted-price config refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.prices.actions import (
    ActionPayloadError,
    polygon_dividends,
    polygon_splits,
    polygon_v1_dividends,
    polygon_v1_splits,
)
from marketcov_dagster.lib.prices.ledger import LedgerUnavailable, refresh_ledger
from marketcov_dagster.lib.universe import ConfigError, load_universe
from marketcov_dagster.lib.vendors.polygon import PolygonVendor
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeAlpaca, FakePolygon, market_actions
from marketcov_dagster_tests.vendors.conftest import client, settings

XNYS = get_calendar("XNYS")
SYMBOLS = ["NVDA", "JPM", "AAPL"]
FIRST, LAST = date(2024, 1, 1), date(2025, 6, 30)


@pytest.fixture
def wh() -> Iterator[Warehouse]:
    w = Warehouse("sqlite://")
    yield w
    w.dispose()


def _by_key(actions: list) -> dict:  # type: ignore[type-arg]
    return {(a.symbol, a.kind, a.ex_date): a for a in actions}


@pytest.mark.parametrize(("api", "prefix"), [("stocks_v1", "/stocks/v1/"), ("v3_reference", "/v3/reference/")])
def test_both_vendors_state_the_market_split_reverse_split_and_dividends(wh: Warehouse, api: str, prefix: str) -> None:
    truth = _by_key(market_actions(SYMBOLS, FIRST, LAST))
    assert ("NVDA", "split", date(2024, 6, 10)) in truth and truth[
        ("NVDA", "split", date(2024, 6, 10))
    ].split_ratio == 10
    assert truth[("JPM", "split", date(2025, 3, 17))].split_ratio == pytest.approx(0.2)
    with FakePolygon() as p, FakeAlpaca() as a:
        polygon, alpaca = client("polygon", p, wh, actions_api=api), client("alpaca", a, wh)
        for vendor in (polygon, alpaca):
            got = _by_key(vendor.fetch_actions(SYMBOLS, FIRST, LAST))
            assert set(got) == set(truth), vendor.name
            for k, want in truth.items():
                assert got[k].vendor == vendor.name
                assert got[k].same_terms(want), (vendor.name, k)
        # polygon: one request per ticker and kind, with the documented range filters
        ref = [r for r in p.requests if r.path.startswith(prefix)]
        assert (
            len(ref)
            == 2 * len(SYMBOLS)
            == len([r for r in p.requests if "/splits" in r.path or "/dividends" in r.path])
        )
        assert {r.query.get("execution_date.gte") for r in ref if r.path.endswith("splits")} == {FIRST.isoformat()}
        # alpaca: its window reaches past ex-dates (process_date is the payment date)
        (ca,) = [r for r in a.requests if r.path == "/v1/corporate-actions"]
        assert ca.query["end"] > LAST.isoformat() and "cash_dividend" in ca.query["types"]
        result = refresh_ledger(wh, [polygon, alpaca], SYMBOLS, FIRST, LAST)
    assert result.disagreements == [] and result.counts()["added"] == 2 * len(truth)
    assert [a.ex_date for a in wh.actions_in_force("NVDA")] == [date(2024, 6, 10)]
    again = refresh_ledger(wh, [SyntheticVendor(lambda _s: XNYS)], SYMBOLS, FIRST, LAST)
    assert again.counts()["added"] == len(truth)  # a third vendor's statements are kept beside


def test_vendors_that_disagree_are_named_and_a_withdrawn_action_is_kept(wh: Warehouse) -> None:
    nvda = next(a for a in market_actions(["NVDA"], FIRST, LAST) if a.kind == "split")
    dividend = next(a for a in market_actions(["AAPL"], FIRST, LAST) if a.kind == "dividend")
    with FakePolygon() as p, FakeAlpaca() as a:
        a.actions.altered[nvda.vendor_id] = replace(nvda, ratio_to=4.0)  # alpaca says 4-for-1
        p.actions.withdrawn.add(dividend.vendor_id)  # polygon lacks one dividend
        vendors = [client("polygon", p, wh), client("alpaca", a, wh)]
        result = refresh_ledger(wh, vendors, SYMBOLS, FIRST, LAST)
        said = {d.describe() for d in result.disagreements}
        assert "NVDA split ex 2024-06-10: polygon says 10-for-1 split; alpaca says 4-for-1 split" in said
        assert any(
            s.startswith(f"AAPL dividend ex {dividend.ex_date}: polygon says nothing; alpaca says") for s in said
        )
        # alpaca withdraws the AAPL dividend too: kept in the ledger, marked withdrawn, no longer in force
        a.actions.withdrawn.add(dividend.vendor_id)
        later = datetime(2026, 12, 1, tzinfo=UTC)
        result = refresh_ledger(wh, vendors, SYMBOLS, FIRST, LAST, now=later)
    assert [w.ex_date for w in result.changes["alpaca"].withdrawn] == [dividend.ex_date]
    entries = [e for e in wh.ledger_entries("AAPL") if e.action.ex_date == dividend.ex_date]
    assert [(e.action.vendor, e.withdrawn_at) for e in entries] == [("alpaca", later)]
    assert dividend.ex_date not in [x.ex_date for x in wh.actions_in_force("AAPL")]


def test_no_vendor_answering_writes_nothing(wh: Warehouse) -> None:
    with FakePolygon() as p:
        broken = PolygonVendor(  # a wrong key: a real 401 from the server
            api_key="wrong", base_url=p.url, settings=settings("polygon", max_attempts=1), calendar=XNYS, ledger=wh
        )
        with pytest.raises(LedgerUnavailable, match="no vendor answered"):
            refresh_ledger(wh, [broken], SYMBOLS, FIRST, LAST)
    assert wh.ledger_entries() == []


def test_malformed_payloads_are_refused_by_name() -> None:
    with pytest.raises(ActionPayloadError, match="split_to"):
        polygon_splits({"results": [{"id": "x", "ticker": "A", "execution_date": "2024-01-02", "split_from": 1}]}, {})
    with pytest.raises(ActionPayloadError, match="not a positive number"):
        polygon_dividends(
            {"results": [{"ticker": "A", "ex_dividend_date": "2024-01-02", "cash_amount": -1, "dividend_type": "CD"}]},
            {},
        )
    with pytest.raises(ActionPayloadError, match="adjustment_type 'spin_off'"):
        polygon_v1_splits(
            {"results": [{"ticker": "A", "execution_date": "2024-01-02", "adjustment_type": "spin_off"}]}, {}
        )
    with pytest.raises(ActionPayloadError, match="cash_amount"):
        polygon_v1_dividends({"results": [{"ticker": "A", "ex_dividend_date": "2024-01-02"}]}, {})
    with pytest.raises(ActionPayloadError, match="not a date"):
        polygon_splits(
            {"results": [{"id": "x", "ticker": "A", "execution_date": "soon", "split_from": 1, "split_to": 2}]}, {}
        )


@pytest.mark.parametrize(
    ("vendors", "field"),
    [("polygon: {requests_per_minute: 5, adjusted: true}", "adjusted"), ("alpaca: {adjustment: split}", "adjustment")],
)
def test_a_config_asking_for_adjusted_bars_is_refused(tmp_path, vendors: str, field: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "u.yaml"
    cfg.write_text(
        "intervals: {1d: {window_days: 30}}\n"
        "asset_classes: {us: {calendar: XNYS, vendors: [alpaca, polygon], intervals: [1d], symbols: [AAPL]}}\n"
        f"vendors:\n  {vendors}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_universe(str(cfg))
    assert field in str(e.value) and "raw (as traded) bars only" in str(e.value)
