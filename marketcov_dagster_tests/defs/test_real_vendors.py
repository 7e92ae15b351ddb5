"""Dagster range backfills through each real client (against its loopback server), fallback
between vendors, and no key anywhere Dagster or the warehouse writes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from marketcov_dagster.defs.backfill import failure_cause
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.history import coverage_for
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, group_job_name
from marketcov_dagster.defs.resources import VendorsResource, WarehouseResource
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.universe import parse_universe
from marketcov_dagster.lib.verify import CHECK_NAMES
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import (
    FakeAlpaca,
    FakeBinance,
    FakePolygon,
    FakeVendorServer,
    Fault,
    regular_bars,
)
from marketcov_dagster_tests.vendors.conftest import FAST

NOW = datetime(2024, 12, 6, 22, 0, tzinfo=UTC)
EQUITY_RANGE = ("2024-11-25", "2024-12-03")  # Thanksgiving holiday and early close inside
CRYPTO_RANGE = ("2024-11-30", "2024-12-02")


def universe(equity_vendors: list[str], crypto_vendors: list[str]) -> Any:
    return parse_universe(
        {
            "intervals": {"1d": {"window_days": 1095}, "1m": {"window_days": 730, "min_completeness": 0.98}},
            "asset_classes": {
                "us_equity": {
                    "calendar": "XNYS",
                    "vendors": equity_vendors,
                    "intervals": ["1d", "1m"],
                    "symbols": ["AAPL", "BRK.B"],
                },
                "crypto": {
                    "calendar": "24/7",
                    "vendors": crypto_vendors,
                    # Alpaca's daily crypto bars are not UTC days; the config refuses them
                    "intervals": ["1m"] if "alpaca" in crypto_vendors else ["1d", "1m"],
                    "symbols": ["BTCUSDT"],
                },
            },
            "vendors": {name: FAST for name in ("alpaca", "binance", "polygon")},
        }
    )


@pytest.fixture
def servers() -> Iterator[dict[str, FakeVendorServer]]:
    with FakeAlpaca() as a, FakeBinance() as b, FakePolygon() as p:
        yield {"alpaca": a, "binance": b, "polygon": p}


def vendors_resource(servers: dict[str, FakeVendorServer]) -> VendorsResource:
    return VendorsResource(
        alpaca_key_id=FakeAlpaca.KEY_ID,
        alpaca_secret_key=FakeAlpaca.SECRET,
        polygon_api_key=FakePolygon.API_KEY,
        alpaca_base_url=servers["alpaca"].url,
        binance_base_url=servers["binance"].url,
        polygon_base_url=servers["polygon"].url,
    )


def run(
    tmp_path: Path,
    servers: dict[str, FakeVendorServer],
    equity: list[str],
    crypto: list[str],
    calendar: str,
    interval: str,
    instance: dg.DagsterInstance,
) -> tuple[dg.ExecuteInProcessResult, Warehouse, dg.Definitions]:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(
        universe(equity, crypto), now=NOW, warehouse=WarehouseResource(url=url), vendors=vendors_resource(servers)
    )
    start, end = EQUITY_RANGE if calendar == "XNYS" else CRYPTO_RANGE
    result = defs.resolve_job_def(group_job_name(calendar, interval)).execute_in_process(
        instance=instance, tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, raise_on_error=False
    )
    return result, Warehouse(url), defs


def assert_partitions_match_market(
    instance: dg.DagsterInstance, symbol: str, key: dg.AssetKey, interval: str, calendar: str, vendor: str
) -> None:
    cal = get_calendar(calendar)
    start, end = EQUITY_RANGE if calendar == "XNYS" else CRYPTO_RANGE
    sessions = cal.sessions(date.fromisoformat(start), date.fromisoformat(end))
    recs = {
        r.partition_key: r.asset_materialization.metadata
        for r in instance.fetch_materializations(key, limit=100).records
    }  # type: ignore[union-attr]
    assert set(recs) == {d.isoformat() for d in sessions}
    for d in sessions:
        truth = regular_bars(symbol, interval, d, d)
        md = recs[d.isoformat()]
        assert md["rows"].value == len(truth) == cal.bounds(d).expected_bars(interval)  # type: ignore[attr-defined,arg-type]
        assert md["checksum"].value == bars_checksum(truth)  # type: ignore[attr-defined]
        assert md["vendor"].value == vendor  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("vendor", "calendar", "interval", "symbol"),
    [
        ("alpaca", "XNYS", "1m", "BRK.B"),
        ("polygon", "XNYS", "1m", "AAPL"),
        ("polygon", "XNYS", "1d", "BRK.B"),
        ("binance", "24/7", "1m", "BTCUSDT"),
        ("alpaca", "24/7", "1m", "BTCUSDT"),
    ],
)
def test_range_backfill_through_each_real_client(
    tmp_path: Path, servers: dict[str, FakeVendorServer], vendor: str, calendar: str, interval: str, symbol: str
) -> None:
    with dg.instance_for_test() as instance:
        result, wh, _ = run(
            tmp_path,
            servers,
            [vendor if calendar == "XNYS" else "alpaca"],
            [vendor if calendar == "24/7" else "binance"],
            calendar,
            interval,
            instance,
        )
        assert result.success
        key = dg.AssetKey(["ohlcv", interval, symbol.replace(".", "_2E_")])
        assert_partitions_match_market(instance, symbol, key, interval, calendar, vendor)
        assert set(wh.lineage(symbol, interval)["vendor"]) == {vendor}
        status = {s["vendor"]: s for s in wh.vendor_statuses()}
        assert status[vendor]["state"] == "ok" and status[vendor]["calls"] >= 1


def test_primary_down_secondary_serves_and_coverage_is_complete(
    tmp_path: Path, servers: dict[str, FakeVendorServer]
) -> None:
    servers["alpaca"].script = [Fault(503, {}, b"")] * 1000
    with dg.instance_for_test() as instance:
        result, wh, _ = run(tmp_path, servers, ["alpaca", "polygon"], ["binance"], "XNYS", "1m", instance)
        assert result.success
        assert_partitions_match_market(instance, "AAPL", dg.AssetKey(["ohlcv", "1m", "AAPL"]), "1m", "XNYS", "polygon")
        assert set(wh.lineage("AAPL", "1m")["vendor"]) == {"polygon"}
        log = wh.remediation(symbols=["AAPL"])
        assert "gave up after 4 attempts" in log.loc[log["kind"] == "vendor_error", "detail"].iloc[0]
        assert len(log[log["kind"] == "vendor_fallback"]) == 6  # one per session
        spec = next(s for s in universe(["alpaca", "polygon"], ["binance"]).specs if s.key_str == "ohlcv/1m/AAPL")
        cov = coverage_for(instance, [spec], now=NOW)[0]
        # the backfilled range is one complete segment, nothing partial
        assert not cov.partial and cov.covered_sessions == 6
        assert (cov.segments[-1].start, cov.segments[-1].end) == EQUITY_RANGE and cov.segments[-1].sessions == 6
        assert {s["vendor"]: s["state"] for s in wh.vendor_statuses()} == {"alpaca": "unavailable", "polygon": "ok"}


def test_primary_empty_for_one_session_secondary_fills_it(tmp_path: Path, servers: dict[str, FakeVendorServer]) -> None:
    day = date(2024, 11, 29)  # the early close
    servers["alpaca"].missing = {int(t) for t in regular_bars("AAPL", "1m", day, day)["ts"]}
    servers["alpaca"].missing |= {int(t) for t in regular_bars("BRK.B", "1m", day, day)["ts"]}
    with dg.instance_for_test() as instance:
        result, wh, _ = run(tmp_path, servers, ["alpaca", "polygon"], ["binance"], "XNYS", "1m", instance)
        assert result.success
        lineage = wh.lineage("AAPL", "1m").set_index("session")["vendor"].to_dict()
        assert lineage.pop(day.isoformat()) == "polygon" and set(lineage.values()) == {"alpaca"}
        md = {
            r.partition_key: r.asset_materialization.metadata  # type: ignore[union-attr]
            for r in instance.fetch_materializations(dg.AssetKey(["ohlcv", "1m", "AAPL"]), limit=100).records
        }
        assert md[day.isoformat()]["vendor"].value == "polygon" and md[day.isoformat()]["rows"].value == 210  # type: ignore[attr-defined]
        # polygon was asked only for the session alpaca left empty
        assert {r.path.split("/")[-2] for r in servers["polygon"].requests} == {
            str(get_calendar("XNYS").bounds(day).open_ms)
        }


def test_all_vendors_down_fails_the_run_and_changes_nothing(
    tmp_path: Path, servers: dict[str, FakeVendorServer]
) -> None:
    servers["alpaca"].script = [Fault(503, {}, b"")] * 1000
    servers["polygon"].script = [Fault(401, {}, b'{"status": "ERROR", "error": "Unknown API Key"}')] * 1000
    with dg.instance_for_test() as instance:
        result, wh, _ = run(tmp_path, servers, ["alpaca", "polygon"], ["binance"], "XNYS", "1d", instance)
        assert not result.success
        assert wh.count_bars() == 0 and wh.lineage().empty
        kinds = set(wh.remediation()["kind"])
        assert kinds == {"vendor_error"}
        assert {s["vendor"]: s["state"] for s in wh.vendor_statuses()} == {
            "alpaca": "unavailable",
            "polygon": "auth_failing",
        }


def test_keys_appear_in_no_log_metadata_event_or_table(
    tmp_path: Path,
    servers: dict[str, FakeVendorServer],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secrets = [FakeAlpaca.KEY_ID, FakeAlpaca.SECRET, FakePolygon.API_KEY]
    servers["alpaca"].script = [Fault(500, {}, b"")] * 4 + [Fault(403, {}, b'{"message": "forbidden"}')]
    servers["polygon"].script = [Fault(delay=1.5)]  # a timeout: requests' own message would carry the URL
    caplog.set_level(logging.DEBUG)  # urllib3 logs every URL at DEBUG
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result, wh, _ = run(tmp_path, servers, ["alpaca", "polygon"], ["binance"], "XNYS", "1m", instance)
        assert result.success
        assert servers["polygon"].requests[0].query["apiKey"] == FakePolygon.API_KEY  # the key was really used
        events = "\n".join(str(e) for e in instance.all_logs(result.run_id))
        metadata = "\n".join(
            str(r.asset_materialization.metadata)  # type: ignore[union-attr]
            for r in instance.fetch_materializations(dg.AssetKey(["ohlcv", "1m", "AAPL"]), limit=100).records
        )
    captured = capfd.readouterr()
    tables = "\n".join(str(t.to_dict("records")) for t in (wh.lineage(), wh.remediation())) + str(wh.vendor_statuses())
    files = b"".join(p.read_bytes() for p in [*home.rglob("*"), tmp_path / "wh.sqlite"] if p.is_file())
    assert "urllib3" in caplog.text and "apiKey=***" in caplog.text
    for secret in secrets:
        for where, text in [
            ("python logs", caplog.text),
            ("stdout/stderr", captured.out + captured.err),
            ("event log", events),
            ("metadata", metadata),
            ("warehouse tables", tables),
        ]:
            assert secret not in text, f"{secret[:4]}… leaked into {where}"
        assert secret.encode() not in files, f"{secret[:4]}… leaked into a file under DAGSTER_HOME or the warehouse"


def test_one_failing_symbol_leaves_the_rest_of_its_group_written_and_checked(
    tmp_path: Path, servers: dict[str, FakeVendorServer]
) -> None:
    """A group's assets share one step: an unknown symbol fails the step, naming itself and the
    vendor's answer, after the others were written and checked."""
    cfg = {
        "intervals": {"1d": {"window_days": 1095}},
        "asset_classes": {
            "crypto": {
                "calendar": "24/7",
                "vendors": ["binance"],
                "intervals": ["1d"],
                "symbols": ["ZZZUSDT", "BTCUSDT"],  # the failing one first
            }
        },
        "vendors": {"binance": FAST},
    }
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    defs = build_definitions(
        parse_universe(cfg), now=NOW, warehouse=WarehouseResource(url=url), vendors=vendors_resource(servers)
    )
    start, end = CRYPTO_RANGE
    sessions = [
        d.isoformat() for d in get_calendar("24/7").sessions(date.fromisoformat(start), date.fromisoformat(end))
    ]
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = defs.resolve_job_def("ohlcv_24_7_1d_job").execute_in_process(
            instance=instance, tags={RANGE_START_TAG: start, RANGE_END_TAG: end}, raise_on_error=False
        )
        assert not result.success
        assert "ohlcv_24_7_1d: ohlcv/1d/ZZZUSDT: VendorError" in failure_cause(result.all_events)
        assert "Invalid symbol" in failure_cause(result.all_events)

        btc, zzz = dg.AssetKey(["ohlcv", "1d", "BTCUSDT"]), dg.AssetKey(["ohlcv", "1d", "ZZZUSDT"])
        written = {r.partition_key for r in instance.fetch_materializations(btc, limit=100).records}
        assert written == set(sessions)
        assert not instance.fetch_materializations(zzz, limit=100).records
        evaluations = [
            e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        per_partition = {(ev.check_name, ev.partition) for ev in evaluations if ev.asset_key == btc and ev.partition}
        assert per_partition == {(c, s) for c in CHECK_NAMES for s in sessions}
        assert all(ev.passed for ev in evaluations if ev.asset_key == btc)
        assert not [ev for ev in evaluations if ev.asset_key == zzz]  # nothing written, nothing checked
    assert len(Warehouse(url).read_bars("BTCUSDT", "1d", 0, 2**62)) == len(sessions)
