"""Real HTTP servers on loopback that speak each vendor's documented wire format
(``shared/reference/vendors.md``), serving calendar-true bars from the synthetic market.

Each server keeps a log of the requests it received (time, path, query, headers) and a script
of faults to inject before serving normally: status codes with headers and bodies, delays (for
timeouts), malformed bodies. ``missing`` removes bars (minutes with no trades).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from marketcov_dagster.lib.calendars import TradingCalendar, get_calendar
from marketcov_dagster.lib.intervals import MINUTE_MS
from marketcov_dagster.lib.prices.actions import CorporateAction
from marketcov_dagster.lib.vendors.synthetic import SyntheticVendor

NEW_YORK = ZoneInfo("America/New_York")
# the market "now": every day before today has traded (derived from the clock, so tests that ask
# for recent sessions work on any date)
CLOCK = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def market_calendar(symbol: str) -> TradingCalendar:
    return get_calendar("24/7" if symbol.endswith(("USDT", "USD")) or "/" in symbol else "XNYS")


MARKET = SyntheticVendor(market_calendar, clock=lambda: CLOCK)


def market_actions(symbols: list[str], first: date, last: date) -> list[CorporateAction]:
    """The synthetic market's corporate actions with ex-dates in ``first..last``."""
    return MARKET.fetch_actions(symbols, first, last)


class ActionsScript:
    """What a fake server states about corporate actions: the market's, less ``withdrawn``
    (vendor ids it no longer states), with ``altered`` terms (vendor id -> replacement)."""

    def __init__(self) -> None:
        self.withdrawn: set[str] = set()
        self.altered: dict[str, CorporateAction] = {}

    def stated(self, symbols: list[str], first: date, last: date) -> list[CorporateAction]:
        out = []
        for a in market_actions(symbols, first, last):
            if a.vendor_id in self.withdrawn:
                continue
            out.append(self.altered.get(a.vendor_id, a))
        return out


def regular_bars(symbol: str, interval: str, first: date, last: date) -> pd.DataFrame:
    """What the market traded in regular sessions ``first..last`` (the truth tests compare to)."""
    cal = market_calendar(symbol)
    sessions = cal.sessions(first, last)
    if not sessions:
        return MARKET.fetch_bars(symbol, "1m", CLOCK, CLOCK)
    start = datetime.fromtimestamp(cal.bounds(sessions[0]).open_ms / 1000, UTC)
    end = datetime.fromtimestamp(cal.bounds(sessions[-1]).close_ms / 1000, UTC)
    return MARKET.fetch_bars(symbol, interval, start, end)  # type: ignore[arg-type]


@dataclass
class Fault:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0  # seconds before answering (then the normal answer, unless status/body set)


@dataclass
class Request:
    at: float
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeVendorServer:
    """Base: routing, request log, fault script, threads."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Fault] = []
        self.missing: set[int] = set()  # bar open times (ms) that did not trade
        self.revised: dict[int, float] = {}  # bar open time (ms) -> factor its prices are now served times
        self.page_size = 10_000
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append(Request(time.time(), parts.path, query, dict(h.headers.items())))
            fault = self.script.pop(0) if self.script else None
        status, headers, body = 200, {}, None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            status, headers, body = fault.status, fault.headers, fault.body
        if body is None and status == 200:
            status, extra, payload = self.route(parts.path, query, dict(h.headers.items()))
            headers = {**headers, **extra}
            body = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body or b"")))
            h.end_headers()
            h.wfile.write(body or b"")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    # ---- the market, as vendors stamp it -------------------------------------------------
    def traded(self, symbol: str, interval: str, start_ms: int, end_ms: int, extended: bool) -> pd.DataFrame:
        """Bars with open time in [start_ms, end_ms]; with ``extended``, minute bars also from
        04:00 to 20:00 New York time, as Alpaca and Polygon serve them."""
        cal = market_calendar(symbol)
        lo = datetime.fromtimestamp(start_ms / 1000, cal.tz).date() - timedelta(days=1)
        hi = datetime.fromtimestamp(end_ms / 1000, cal.tz).date() + timedelta(days=1)
        df = regular_bars(symbol, interval, lo, hi)
        if extended and interval == "1m" and not cal.always_open:
            extra = []
            for d in cal.sessions(lo, hi):
                b = cal.bounds(d)
                pre0 = int(datetime(d.year, d.month, d.day, 4, tzinfo=NEW_YORK).timestamp() * 1000)
                post1 = int(datetime(d.year, d.month, d.day, 20, tzinfo=NEW_YORK).timestamp() * 1000)
                extra.append(np.arange(pre0, b.open_ms, MINUTE_MS * 7))
                extra.append(np.arange(b.close_ms, post1, MINUTE_MS * 5))
            ts = np.concatenate(extra) if extra else np.array([], dtype=np.int64)
            ext = pd.DataFrame({"ts": ts, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100.0})
            df = pd.concat([df, ext]).sort_values("ts").reset_index(drop=True)
        df = df[(df["ts"] >= start_ms) & (df["ts"] <= end_ms) & ~df["ts"].isin(self.missing)].reset_index(drop=True)
        for ts, factor in self.revised.items():  # the vendor corrected these bars
            at = df["ts"] == ts
            df.loc[at, ["open", "high", "low", "close"]] *= factor
        return df


def _ms_from_rfc3339(s: str) -> int:
    return int(pd.Timestamp(s).tz_convert("UTC").value // 1_000_000)


def _daily_stamp(cal: TradingCalendar, open_ms: int, tz: ZoneInfo) -> int:
    """Vendors stamp a daily bar at midnight of its session date in ``tz``."""
    d = datetime.fromtimestamp(open_ms / 1000, cal.tz).date()
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def _records(df: pd.DataFrame) -> list[tuple[int, float, float, float, float, float]]:
    cols = [df[c].to_numpy() for c in ("ts", "open", "high", "low", "close", "volume")]
    return [
        (int(t), float(o), float(h), float(lo), float(c), float(v)) for t, o, h, lo, c, v in zip(*cols, strict=True)
    ]


def _token(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class FakeAlpaca(FakeVendorServer):
    KEY_ID, SECRET = "PKTESTKEYID0000000001", "alpaca-secret-value-0123456789"
    SYMBOLS = frozenset({"AAPL", "BRK.B", "MSFT", "BTC/USDT", "ETH/USDT"})

    def __init__(self) -> None:
        super().__init__()
        self.actions = ActionsScript()

    def _corporate_actions(self, query: dict[str, str]) -> dict[str, Any]:
        # start/end filter on process_date (the payment date for dividends), as the docs warn
        first, last = date.fromisoformat(query["start"]), date.fromisoformat(query["end"])
        symbols = query.get("symbols", "").split(",")
        stated = self.actions.stated(symbols, first - timedelta(days=30), last)
        body = _alpaca_actions_body(stated)
        for rows in body["corporate_actions"].values():
            rows[:] = [r for r in rows if first.isoformat() <= r["process_date"] <= last.isoformat()]
        return body

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        rl = {
            "X-Ratelimit-Limit": "200",
            "X-Ratelimit-Remaining": "199",
            "X-Ratelimit-Reset": str(int(time.time()) + 60),
        }
        if path == "/v1/corporate-actions":
            if headers.get("APCA-API-KEY-ID") != self.KEY_ID or headers.get("APCA-API-SECRET-KEY") != self.SECRET:
                return 403, rl, {"message": "forbidden"}
            return 200, rl, self._corporate_actions(query)
        crypto = path == "/v1beta3/crypto/us/bars"
        if not crypto:
            if not path.startswith("/v2/stocks/") or not path.endswith("/bars"):
                return 404, rl, {"message": "Not Found"}
            if headers.get("APCA-API-KEY-ID") != self.KEY_ID or headers.get("APCA-API-SECRET-KEY") != self.SECRET:
                return 403, rl, {"message": "forbidden"}
            symbol = unquote(path[len("/v2/stocks/") : -len("/bars")])
        else:
            symbol = query.get("symbols", "")
        tf = query.get("timeframe", "")
        if tf not in ("1Min", "1Day"):
            return 422, rl, {"code": 42210000, "message": "invalid timeframe"}
        if symbol not in self.SYMBOLS:
            return 400, rl, {"code": 40010001, "message": f"invalid symbol: {symbol}"}
        limit = int(query.get("limit", "1000"))
        if limit > 10_000:
            return 422, rl, {"code": 42210000, "message": "invalid limit: larger than the allowed maximum of 10000"}
        interval = "1d" if tf == "1Day" else "1m"
        ours = symbol.replace("/", "")
        cal = market_calendar(ours)
        start_ms, end_ms = _ms_from_rfc3339(query["start"]), _ms_from_rfc3339(query["end"])
        # daily bars are stamped at midnight New York; select on the stamp
        df = self.traded(ours, interval, start_ms - 86_400_000, end_ms + 86_400_000, extended=not crypto)
        if interval == "1d":
            df = df.assign(ts=[_daily_stamp(cal, int(t), NEW_YORK) for t in df["ts"]])
        df = df[(df["ts"] >= start_ms) & (df["ts"] <= end_ms)].reset_index(drop=True)
        offset = int(base64.b64decode(query["page_token"]).decode().split("|")[-1]) if "page_token" in query else 0
        size = min(limit, self.page_size)
        page = df.iloc[offset : offset + size]
        bars = [
            {
                "t": datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "o": o,
                "h": hi,
                "l": lo,
                "c": c,
                "v": int(v),
                "n": 10,
                "vw": round((hi + lo) / 2, 4),
            }
            for (ts, o, hi, lo, c, v) in _records(page)
        ]
        token = _token(f"{symbol}|{tf}|{offset + size}") if offset + size < len(df) else None
        if crypto:
            return 200, rl, {"bars": {symbol: bars} if bars else {}, "next_page_token": token}
        return 200, rl, {"bars": bars, "symbol": symbol, "next_page_token": token}


def _alpaca_actions_body(actions: list[CorporateAction]) -> dict[str, Any]:
    """``/v1/corporate-actions`` as documented: one object keyed by plural type."""
    groups: dict[str, list[dict[str, Any]]] = {"forward_splits": [], "reverse_splits": [], "cash_dividends": []}
    for a in actions:
        common = {"id": a.vendor_id, "symbol": a.symbol, "ex_date": a.ex_date.isoformat()}
        if a.kind == "split":
            kind = "forward_splits" if a.ratio_to > a.ratio_from else "reverse_splits"
            row = {**common, "new_rate": a.ratio_to, "old_rate": a.ratio_from, "process_date": a.ex_date.isoformat()}
            row.update({"cusip": "CUSIP1"} if kind == "forward_splits" else {"old_cusip": "O1", "new_cusip": "N1"})
        else:
            kind = "cash_dividends"
            pay = (a.ex_date + timedelta(days=14)).isoformat()  # process_date is the payment date
            row = {**common, "cusip": "CUSIP1", "rate": a.cash, "special": False, "foreign": False}
            row.update(process_date=pay, payable_date=pay, record_date=a.ex_date.isoformat())
        groups[kind].append(row)
    return {"corporate_actions": groups, "next_page_token": None}


class FakeBinance(FakeVendorServer):
    SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})

    def __init__(self) -> None:
        super().__init__()
        self.used_weight = 0
        self.page_size = 1000

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.used_weight += 2
            w = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight), "X-MBX-USED-WEIGHT": str(self.used_weight)}
        if path != "/api/v3/klines":
            return 404, w, {"code": -1000, "msg": "Unknown path."}
        symbol = query.get("symbol", "")
        if symbol not in self.SYMBOLS:
            return 400, w, {"code": -1121, "msg": "Invalid symbol."}
        interval = query.get("interval", "")
        if interval not in ("1m", "1d"):
            return 400, w, {"code": -1120, "msg": "Invalid interval."}
        limit = int(query.get("limit", "500"))
        if limit > 1000:
            return 400, w, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}
        start = int(query.get("startTime", "0"))
        end = int(query.get("endTime", str(2**62)))
        df = self.traded(symbol, interval, start, end, extended=False).iloc[: min(limit, self.page_size)]
        step = 86_400_000 if interval == "1d" else MINUTE_MS
        rows = [
            [
                ts,
                f"{o:.8f}",
                f"{hi:.8f}",
                f"{lo:.8f}",
                f"{c:.8f}",
                f"{v:.8f}",
                ts + step - 1,
                f"{v * c:.8f}",
                100,
                f"{v / 2:.8f}",
                f"{v * c / 2:.8f}",
                "0",
            ]
            for (ts, o, hi, lo, c, v) in _records(df)
        ]
        return 200, w, rows


class FakePolygon(FakeVendorServer):
    API_KEY = "polygon-secret-key-abcdef123456"
    SYMBOLS = frozenset({"AAPL", "BRK.B", "MSFT"})

    def __init__(self) -> None:
        super().__init__()
        self.actions = ActionsScript()

    def _reference(self, kind: str, query: dict[str, str]) -> dict[str, Any]:
        """``/v3/reference/splits`` and ``/v3/reference/dividends`` as documented (newest first)."""
        field = "execution_date" if kind == "splits" else "ex_dividend_date"
        first = date.fromisoformat(query.get(f"{field}.gte", "1900-01-01"))
        last = date.fromisoformat(query.get(f"{field}.lte", "2100-01-01"))
        want = "split" if kind == "splits" else "dividend"
        stated = [a for a in self.actions.stated([query["ticker"]], first, last) if a.kind == want]
        rows: list[dict[str, Any]] = []
        for a in sorted(stated, key=lambda a: a.ex_date, reverse=True):
            if a.kind == "split":
                rows.append(
                    {
                        "execution_date": a.ex_date.isoformat(),
                        "id": a.vendor_id,
                        "split_from": a.ratio_from,
                        "split_to": a.ratio_to,
                        "ticker": a.symbol,
                    }
                )
            else:
                rows.append(
                    {
                        "cash_amount": a.cash,
                        "currency": a.currency,
                        "dividend_type": "CD",
                        "ex_dividend_date": a.ex_date.isoformat(),
                        "frequency": 4,
                        "id": a.vendor_id,
                        "pay_date": (a.ex_date + timedelta(days=14)).isoformat(),
                        "ticker": a.symbol,
                    }
                )
        return {"results": rows, "status": "OK", "request_id": "req"}

    def _stocks_v1(self, kind: str, query: dict[str, str]) -> dict[str, Any]:
        """``/stocks/v1/splits`` and ``/stocks/v1/dividends``, their successors: the same events with
        ``adjustment_type`` and Polygon's cumulative ``historical_adjustment_factor`` on splits,
        ``distribution_type`` on dividends, and no ``dividend_type``."""
        doc = self._reference(kind, query)
        splits = sorted((r for r in doc["results"] if "split_from" in r), key=lambda r: r["execution_date"])
        factor = 1.0
        for r in reversed(splits):  # to today's share basis: the product of the later splits' inverses
            factor *= r["split_from"] / r["split_to"]
            r["historical_adjustment_factor"] = factor
            r["adjustment_type"] = "forward_split" if r["split_to"] > r["split_from"] else "reverse_split"
        for r in doc["results"]:
            if "dividend_type" in r:
                r["distribution_type"] = "special" if r.pop("dividend_type") == "SC" else "recurring"
        return doc

    def route(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("apiKey") != self.API_KEY:
            return 401, {}, {"status": "ERROR", "request_id": "x", "error": "Unknown API Key"}
        if path in ("/v3/reference/splits", "/v3/reference/dividends"):
            return 200, {}, self._reference(path.rsplit("/", 1)[1], query)
        if path in ("/stocks/v1/splits", "/stocks/v1/dividends"):
            return 200, {}, self._stocks_v1(path.rsplit("/", 1)[1], query)
        parts = path.split("/")
        # /v2/aggs/ticker/{T}/range/{mult}/{timespan}/{from}/{to}
        if len(parts) != 10 or parts[1:4] != ["v2", "aggs", "ticker"] or parts[5] != "range":
            return 404, {}, {"status": "NOT_FOUND", "request_id": "x", "message": "Not found"}
        ticker, timespan = unquote(parts[4]), parts[7]
        if ticker not in self.SYMBOLS:
            return 404, {}, {"status": "NOT_FOUND", "request_id": "x", "message": f"ticker {ticker} not found"}
        interval = {"minute": "1m", "day": "1d"}.get(timespan)
        if interval is None or parts[6] != "1":
            return 400, {}, {"status": "ERROR", "request_id": "x", "error": "unsupported timespan"}
        cal = market_calendar(ticker)

        def edge(v: str, end: bool) -> int:
            if v.isdigit():
                return int(v)
            d = date.fromisoformat(v) + timedelta(days=1 if end else 0)
            return int(datetime(d.year, d.month, d.day, tzinfo=NEW_YORK).timestamp() * 1000) - (1 if end else 0)

        start_ms, end_ms = edge(parts[8], False), edge(parts[9], True)
        df = self.traded(ticker, interval, start_ms - 86_400_000, end_ms + 86_400_000, extended=True)
        if interval == "1d":
            df = df.assign(ts=[_daily_stamp(cal, int(t), NEW_YORK) for t in df["ts"]])
        df = df[(df["ts"] >= start_ms) & (df["ts"] <= end_ms)].reset_index(drop=True)
        size = min(int(query.get("limit", "5000")), self.page_size)
        page = df.iloc[:size]
        out: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": query.get("adjusted", "true") == "true",
            "status": "OK",
            "request_id": "req",
        }
        if len(page):
            out["results"] = [
                {
                    "o": o,
                    "h": hi,
                    "l": lo,
                    "c": c,
                    "v": v,
                    "vw": c,
                    "t": ts,
                    "n": 5,
                }
                for (ts, o, hi, lo, c, v) in _records(page)
            ]
        if len(df) > size:
            nxt = int(df["ts"].iloc[size])
            cursor = _token(f"limit={size}&sort=asc")
            nxt_path = f"/v2/aggs/ticker/{quote(ticker, safe='')}/range/1/{timespan}/{nxt}/{parts[9]}"
            out["next_url"] = f"{self.url}{nxt_path}?cursor={cursor}"
        return 200, {}, out


def serve(cls: type[FakeVendorServer]) -> Callable[[], Iterator[FakeVendorServer]]:
    def _gen() -> Iterator[FakeVendorServer]:
        with cls() as server:
            yield server

    return _gen
