"""Each client against its loopback server: pages, DST, early closes, faults, typed errors, health."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.checksums import bars_checksum
from marketcov_dagster.lib.vendors.base import (
    AuthError,
    BadPayloadError,
    BadSymbolError,
    BannedError,
    RateLimitedError,
    RestrictedError,
    VendorUnavailableError,
)
from marketcov_dagster.lib.vendors.http import PACING_MARGIN
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.vendor_servers import FakeVendorServer, Fault, regular_bars
from marketcov_dagster_tests.vendors.conftest import SERVERS, client

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

XNYS = get_calendar("XNYS")
CRYPTO = get_calendar("24/7")
DST_WEEK = (date(2024, 3, 4), date(2024, 3, 15))  # US clocks change on 2024-03-10
THANKSGIVING = (date(2024, 11, 25), date(2024, 11, 29))  # 11-28 holiday, 11-29 closes 13:00
SYMBOL = {"alpaca": "AAPL", "polygon": "AAPL", "binance": "BTCUSDT"}


@pytest.fixture(params=["alpaca", "binance", "polygon"])
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeVendorServer]]:
    with SERVERS[request.param]() as server:
        yield request.param, server


def span(first: date, last: date, cal: str = "XNYS") -> tuple[datetime, datetime]:
    c = get_calendar(cal)
    s = c.sessions(first, last)
    return (
        datetime.fromtimestamp(c.bounds(s[0]).open_ms / 1000, UTC),
        datetime.fromtimestamp(c.bounds(s[-1]).close_ms / 1000, UTC),
    )


def fetch(name: str, server: FakeVendorServer, wh: Warehouse, interval: str = "1m", days: int = 1, **kw):  # type: ignore[no-untyped-def]
    cal = "24/7" if name == "binance" else "XNYS"
    first = date(2024, 3, 11)
    sessions = get_calendar(cal).sessions(first, date(2024, 4, 30))[:days]
    return client(name, server, wh, **kw).fetch_bars(SYMBOL[name], interval, *span(sessions[0], sessions[-1], cal))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["alpaca", "polygon"])
@pytest.mark.parametrize("week", [DST_WEEK, THANKSGIVING])
def test_equity_minutes_across_dst_and_early_close_over_many_pages(
    name: str, week: tuple[date, date], sqlite_warehouse: Warehouse
) -> None:
    with SERVERS[name]() as server:
        server.page_size = 500
        got = client(name, server, sqlite_warehouse).fetch_bars("AAPL", "1m", *span(*week))
    truth = regular_bars("AAPL", "1m", *week)
    # extended-hours bars the vendor also sent were dropped; the regular session is exact
    pd.testing.assert_frame_equal(got, truth)
    per_day = pd.Series(got["ts"]).map(lambda t: datetime.fromtimestamp(t / 1000, XNYS.tz).date()).value_counts()
    for d in XNYS.sessions(*week):
        assert per_day[d] == XNYS.bounds(d).expected_bars("1m")
    if week == THANKSGIVING:
        assert per_day[date(2024, 11, 29)] == 210 and date(2024, 11, 28) not in per_day
    else:  # 09:30 New York is 14:30 UTC before the change and 13:30 UTC after it
        assert datetime.fromtimestamp(got["ts"].iloc[0] / 1000, UTC).hour == 14
        assert datetime.fromtimestamp(got["ts"].iloc[-1] / 1000, UTC).hour == 19
    assert len(server.requests) > 3  # several pages
    if name == "alpaca":
        tokens = [r.query.get("page_token") for r in server.requests]
        assert tokens[0] is None and all(tokens[1:]) and len(set(tokens[1:])) == len(tokens) - 1
        assert {r.query["feed"] for r in server.requests} == {"iex"}
    else:  # every next_url page carried the key again
        assert all(r.query.get("apiKey") for r in server.requests)
        assert all("cursor" in r.query for r in server.requests[1:])


def test_daily_bars_map_to_the_session(vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse) -> None:
    name, server = vendor
    cal = "24/7" if name == "binance" else "XNYS"
    window = (date(2024, 10, 1), date(2024, 12, 31))
    got = client(name, server, sqlite_warehouse).fetch_bars(SYMBOL[name], "1d", *span(*window, cal))
    truth = regular_bars(SYMBOL[name], "1d", *window)
    pd.testing.assert_frame_equal(got, truth)
    c = get_calendar(cal)
    assert list(got["ts"]) == [c.bounds(d).open_ms for d in c.sessions(*window)]
    assert bars_checksum(got) == bars_checksum(truth)


def test_binance_minutes_walk_pages_by_start_time(
    binance_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    window = (date(2024, 3, 9), date(2024, 3, 11))
    got = client("binance", binance_server, sqlite_warehouse).fetch_bars("BTCUSDT", "1m", *span(*window, "24/7"))
    pd.testing.assert_frame_equal(got, regular_bars("BTCUSDT", "1m", *window))
    assert len(got) == 3 * 1440
    starts = [int(r.query["startTime"]) for r in binance_server.requests]
    assert len(starts) == 5 and all(b - a == 1000 * 60_000 for a, b in itertools.pairwise(starts))
    assert {r.query["limit"] for r in binance_server.requests} == {"1000"}


def test_retry_after_is_honoured_before_the_next_request(
    vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    if name == "alpaca":  # Alpaca documents no Retry-After; it says when the window resets
        fault = Fault(429, {"X-Ratelimit-Reset": str(int(time.time()) + 2)}, b'{"message": "too many requests."}')
    elif name == "binance":
        fault = Fault(429, {"Retry-After": "1"}, b'{"code": -1003, "msg": "Too much request weight used"}')
    else:
        fault = Fault(429, {"Retry-After": "1"}, b'{"status": "ERROR", "error": "exceeded the maximum requests"}')
    server.script = [fault]
    got = fetch(name, server, sqlite_warehouse)
    assert len(got) > 0
    first, second = server.requests[0].at, server.requests[1].at
    assert second - first >= 1.0, "a request went out before Retry-After expired"
    status = {s["vendor"]: s for s in sqlite_warehouse.vendor_statuses()}[name]
    assert status["rate_limited"] == 1 and status["state"] == "ok"


def test_polygon_429_without_headers_backs_off_and_recovers(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    body = json.dumps({"status": "ERROR", "error": "You've exceeded the maximum requests per minute"}).encode()
    polygon_server.script = [Fault(429, {}, body), Fault(429, {}, body)]
    assert len(fetch("polygon", polygon_server, sqlite_warehouse)) == 390
    assert len(polygon_server.requests) == 3
    at = [r.at for r in polygon_server.requests]
    # each 429 waits out the quota window (1 s here, 60 s by default), not a short jittered backoff
    assert at[1] - at[0] >= 0.95 and at[2] - at[1] >= 0.95, at


def test_a_429_without_retry_after_blocks_every_caller_for_the_quota_window(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    body = json.dumps({"status": "ERROR", "error": "You've exceeded the maximum requests per minute"}).encode()
    polygon_server.script = [Fault(429, {}, body)] * 5
    before = time.time()
    with pytest.raises(RateLimitedError, match="without Retry-After: waiting the 60s window"):
        fetch("polygon", polygon_server, sqlite_warehouse, rate_window_seconds=60.0)
    assert len(polygon_server.requests) == 1, "retried inside the same quota window"
    until, reason = sqlite_warehouse.vendor_block("polygon")
    assert until >= before + 59 and "without Retry-After" in reason
    # another caller (another step, another process) sharing the ledger does not call either
    with pytest.raises(RateLimitedError, match="blocked for another"):
        fetch("polygon", polygon_server, sqlite_warehouse)
    assert len(polygon_server.requests) == 1


def test_no_backoff_sleep_after_the_final_attempt(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    slept: list[float] = []
    vendor = client(
        "polygon",
        polygon_server,
        sqlite_warehouse,
        sleep=slept.append,
        max_attempts=3,
        backoff_base=1.0,
        backoff_max=8.0,
    )
    polygon_server.script = [Fault(503)] * 3
    with pytest.raises(VendorUnavailableError, match="gave up after 3 attempts"):
        vendor.fetch_bars("AAPL", "1m", *span(date(2024, 3, 11), date(2024, 3, 11)))
    assert len(polygon_server.requests) == 3
    assert len(slept) == 2, slept  # between attempts only


def test_pacing_keeps_a_margin_below_the_documented_rate(sqlite_warehouse: Warehouse) -> None:
    """On the client's own clock, not the server's arrival times: those jitter by milliseconds on
    a busy machine, more than the 2 ms margin per request being measured."""
    now = [time.time()]
    granted: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds  # a clock that moves only when the client waits

    with SERVERS["polygon"]() as server:
        vendor = client(
            "polygon", server, sqlite_warehouse, clock=lambda: now[0], sleep=sleep, requests_per_minute=600, burst=1
        )
        for _ in range(4):
            vendor.fetch_bars("AAPL", "1d", *span(date(2024, 3, 11), date(2024, 3, 11)))
            granted.append(now[0])
        assert len(server.requests) == 4
    # 600/minute is one request per 0.1 s; paced 2 % below, each later request waits 0.1/0.98 s
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert gaps == pytest.approx([0.1 / (1 - PACING_MARGIN)] * 3, abs=1e-6), gaps


def test_a_long_retry_after_blocks_every_caller_and_fails_over(
    vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    server.script = [Fault(429, {"Retry-After": "3600"}, b"{}")]
    with pytest.raises(RateLimitedError, match="longer than max_wait"):
        fetch(name, server, sqlite_warehouse)
    # any process sharing the warehouse now refuses to call before the hour is over
    with pytest.raises(RateLimitedError, match="blocked for another"):
        fetch(name, server, sqlite_warehouse)
    assert len(server.requests) == 1


def test_a_burst_of_503s_then_success(vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse) -> None:
    name, server = vendor
    server.script = [Fault(503, {}, b"Service Unavailable")] * 3
    assert len(fetch(name, server, sqlite_warehouse)) > 0
    pages = 2 if name == "binance" else 1  # 1440 crypto minutes are two pages of 1000
    assert len(server.requests) == 3 + pages
    status = {s["vendor"]: s for s in sqlite_warehouse.vendor_statuses()}[name]
    assert status["state"] == "ok" and status["failures"] == 3 and status["calls"] == 3 + pages


def test_503s_beyond_the_attempt_budget_fail_clearly(
    vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    server.script = [Fault(503, {}, b"")] * 10
    with pytest.raises(VendorUnavailableError, match="gave up after 4 attempts; last: HTTP 503"):
        fetch(name, server, sqlite_warehouse)
    assert len(server.requests) == 4  # bounded: no retry storm
    assert {s["vendor"]: s for s in sqlite_warehouse.vendor_statuses()}[name]["state"] == "unavailable"


def test_a_timeout_is_retried_and_a_dead_vendor_gives_up(
    vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    server.script = [Fault(delay=1.5)]
    assert len(fetch(name, server, sqlite_warehouse)) > 0
    assert len(server.requests) == 2 + (1 if name == "binance" else 0)
    server.script = [Fault(delay=1.5)] * 3
    with pytest.raises(VendorUnavailableError, match="gave up after 3 attempts; last: timed out"):
        fetch(name, server, sqlite_warehouse, max_attempts=3)


MALFORMED = {
    "alpaca": [b"<html>oops</html>", b'{"bars": [{"t": "2024-03-11T13:30:00Z", "o": 1, "h": 2, "l": 0.5}]}', b"[]"],
    "binance": [b"<html>oops</html>", b'[[1710163800000, "1", "abc", "1", "1", "1", 1710163859999]]', b'{"a": 1}'],
    "polygon": [b"<html>oops</html>", b'{"status": "OK", "results": [{"t": "x", "o": 1}]}', b'{"status": "ERROR"}'],
}


@pytest.mark.parametrize("case", [0, 1, 2])
def test_malformed_bodies_are_rejected(
    vendor: tuple[str, FakeVendorServer], case: int, sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    server.script = [Fault(200, {}, MALFORMED[name][case])]
    with pytest.raises(BadPayloadError):
        fetch(name, server, sqlite_warehouse)
    assert {s["vendor"]: s for s in sqlite_warehouse.vendor_statuses()}[name]["state"] == "bad_payload"


def test_an_invalid_symbol_is_a_typed_error(vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse) -> None:
    name, server = vendor
    cal = "24/7" if name == "binance" else "XNYS"
    c = client(name, server, sqlite_warehouse)
    with pytest.raises(BadSymbolError):
        c.fetch_bars("NOPE", "1m", *span(date(2024, 3, 11), date(2024, 3, 11), cal))
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize("name", ["alpaca", "polygon"])
def test_wrong_keys_are_an_auth_failure(name: str, sqlite_warehouse: Warehouse) -> None:
    with SERVERS[name]() as server:
        c = client(name, server, sqlite_warehouse)
        c._secrets = ()
        if name == "alpaca":
            c._secret_key = "wrong"  # type: ignore[attr-defined]
        else:
            c._api_key = "wrong"  # type: ignore[attr-defined]
        with pytest.raises(AuthError):
            c.fetch_bars("AAPL", "1m", *span(date(2024, 3, 11), date(2024, 3, 11)))
    assert {s["vendor"]: s for s in sqlite_warehouse.vendor_statuses()}[name]["state"] == "auth_failing"


def test_binance_ban_stops_all_calls_until_it_lifts(
    binance_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    until = int(time.time() * 1000) + 600_000
    binance_server.script = [
        Fault(418, {"Retry-After": "600"}, json.dumps({"code": -1003, "msg": f"IP banned until {until}."}).encode())
    ]
    with pytest.raises(BannedError, match="HTTP 418"):
        fetch("binance", binance_server, sqlite_warehouse)
    with pytest.raises(BannedError, match="blocked for another"):
        fetch("binance", binance_server, sqlite_warehouse)
    assert len(binance_server.requests) == 1
    assert sqlite_warehouse.vendor_statuses()[0]["state"] == "banned"


def test_binance_restricted_location(binance_server: FakeVendorServer, sqlite_warehouse: Warehouse) -> None:
    body = b'{"code": 0, "msg": "Service unavailable from a restricted location according to \'b. Eligibility\'"}'
    binance_server.script = [Fault(451, {}, body)]
    with pytest.raises(RestrictedError, match="restricted location"):
        fetch("binance", binance_server, sqlite_warehouse)
    assert sqlite_warehouse.vendor_statuses()[0]["state"] == "restricted"


def test_binance_used_weight_near_the_limit_pauses_until_the_next_minute(
    binance_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    binance_server.used_weight = 5990  # type: ignore[attr-defined]
    fetch("binance", binance_server, sqlite_warehouse, interval="1d")  # one page
    until, reason = sqlite_warehouse.vendor_block("binance")
    assert "request weight" in reason and until > time.time() and until % 60 == 0


def test_polygon_never_follows_next_url_to_another_host(
    polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse
) -> None:
    body = {"status": "OK", "results": [], "next_url": "https://evil.example/v2/aggs?cursor=x"}
    polygon_server.script = [Fault(200, {}, json.dumps(body).encode())]
    with pytest.raises(BadPayloadError, match="configured scheme and host"):
        fetch("polygon", polygon_server, sqlite_warehouse)
    assert len(polygon_server.requests) == 1


def test_minutes_without_trades_are_simply_absent(
    vendor: tuple[str, FakeVendorServer], sqlite_warehouse: Warehouse
) -> None:
    name, server = vendor
    truth = regular_bars(SYMBOL[name], "1m", date(2024, 3, 11), date(2024, 3, 11))
    server.missing = set(int(t) for t in truth["ts"].iloc[[3, 4, 100, 200]])
    got = fetch(name, server, sqlite_warehouse)
    assert len(got) == len(truth) - 4
    assert not np.isin(list(server.missing), got["ts"]).any()


def test_secrets_never_reach_errors(polygon_server: FakeVendorServer, sqlite_warehouse: Warehouse) -> None:
    polygon_server.script = [Fault(delay=1.5)] * 2
    with pytest.raises(VendorUnavailableError) as e:
        fetch("polygon", polygon_server, sqlite_warehouse, max_attempts=2)
    assert "apiKey" not in str(e.value) and polygon_server.requests[0].query["apiKey"] not in str(e.value)
    statuses = json.dumps(sqlite_warehouse.vendor_statuses(), default=str)
    assert polygon_server.requests[0].query["apiKey"] not in statuses
