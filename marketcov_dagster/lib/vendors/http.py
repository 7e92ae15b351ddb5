"""HTTP discipline shared by every real vendor client.

* connect and read timeouts on every request;
* a token bucket per vendor at the documented rate, kept in the warehouse (``VendorLedger``) so
  every process and run that calls one vendor shares one budget;
* retries with exponential backoff and full jitter on timeouts, connection errors and 5xx, and
  on 429 after exactly the wait the vendor asks for (``Retry-After``), published to the ledger so
  no other process calls before it expires either; a bounded number of attempts, then a typed
  error (see ``base``);
* every real call's outcome recorded as the vendor's health;
* secrets (keys) never appear in errors or logs: messages are redacted and never carry a query
  string;
* redirects are never followed blindly (``requests`` would carry the vendor's key headers and
  query to whatever host a 30x names): one to the same scheme, host and port is followed, any
  other is refused as a vendor error naming only the host.

Retries are written here rather than delegated to urllib3's ``Retry`` because each attempt must
pass through the shared token bucket and ban state, and each outcome must reach the ledger.
"""

from __future__ import annotations

import logging
import random
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import numpy as np
import pandas as pd
import requests

from marketcov_dagster.lib.bars import BadBarsError, canonical, empty_frame, session_mask
from marketcov_dagster.lib.calendars import TradingCalendar
from marketcov_dagster.lib.intervals import MINUTE_MS, Interval
from marketcov_dagster.lib.universe import VendorSettings
from marketcov_dagster.lib.vendors.base import (
    AuthError,
    BadPayloadError,
    BadSymbolError,
    BannedError,
    RateLimitedError,
    Vendor,
    VendorError,
    VendorUnavailableError,
)

log = logging.getLogger(__name__)
MAX_PAGES = 10_000
MAX_REDIRECTS = 5
PACING_MARGIN = 0.02
"""Requests are paced 2 % below the documented rate, so clock skew between us and the vendor
never puts the (n+1)-th request of an n-per-minute budget a few milliseconds inside the minute."""


def origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a URL, lower-cased: what must not change while a key travels."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class VendorLedger(Protocol):
    """Where rate-limit state and vendor health live (the warehouse implements it)."""

    def take_vendor_token(self, vendor: str, per_minute: float, burst: int, now: float) -> float: ...

    def block_vendor(self, vendor: str, until: float, reason: str) -> None: ...

    def vendor_block(self, vendor: str) -> tuple[float, str]: ...

    def record_vendor_call(self, vendor: str, state: str, detail: str, http_status: int | None = None) -> None: ...


class _Redact(logging.Filter):
    """Masks secrets in records of loggers that print URLs (urllib3 logs them at DEBUG)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if any(s in msg for s in self.secrets):
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


_REDACT = _Redact()
logging.getLogger("urllib3.connectionpool").addFilter(_REDACT)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def _num(value: Any, what: str) -> float:
    """A JSON number or numeric string as float; anything else is a bad payload."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} is {type(value).__name__}, not a number")
    return float(value)


class HttpVendor(Vendor):
    """Base of the real clients: requests with timeouts, retries, a shared rate limit and typed errors.

    Subclasses implement ``_fetch`` (pagination and parsing) and may override ``_classify``
    (vendor-specific error bodies), ``_retry_after`` and ``_after_response``.
    """

    name: str

    def __init__(
        self,
        *,
        base_url: str,
        settings: VendorSettings,
        calendar: TradingCalendar,
        ledger: VendorLedger,
        secrets: Sequence[str] = (),
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.calendar = calendar
        self.ledger = ledger
        self._secrets = tuple(s for s in secrets if s)
        _REDACT.secrets.update(self._secrets)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "marketcov-dagster"
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    # ---- the public interface --------------------------------------------------------------
    def fetch_bars(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> pd.DataFrame:
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        try:
            frame = self._fetch(symbol, interval, start_ms, end_ms)
        except BadPayloadError as e:
            self.ledger.record_vendor_call(self.name, e.state, self._redact(str(e)))
            raise
        return self._finish(frame, interval, start_ms, end_ms)

    @abstractmethod
    def _fetch(self, symbol: str, interval: Interval, start_ms: int, end_ms: int) -> pd.DataFrame:
        """All bars with open time in ``[start_ms, end_ms)`` as a canonical frame (unfiltered)."""

    # ---- helpers for subclasses ------------------------------------------------------------
    def _error(self, cls: type[VendorError], message: str) -> VendorError:
        return cls(self.name, self._redact(message))

    def _redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _frame(self, rows: Iterable[tuple[int, Any, Any, Any, Any, Any]]) -> pd.DataFrame:
        """Canonical frame from ``(ts_ms, o, h, l, c, v)`` rows; non-numbers reject the batch."""
        data: dict[str, list[float | int]] = {k: [] for k in ("ts", "open", "high", "low", "close", "volume")}
        try:
            for ts, *values in rows:
                data["ts"].append(ts)
                for k, v in zip(("open", "high", "low", "close", "volume"), values, strict=True):
                    data[k].append(_num(v, k))
            return canonical(pd.DataFrame(data)) if data["ts"] else empty_frame()
        except (ValueError, TypeError, BadBarsError) as e:
            raise self._error(BadPayloadError, f"malformed bar: {e}") from None

    def _daily_ts(self, day: date) -> int:
        """Vendors stamp daily bars with a calendar day; ours are stamped at the session open.
        A day that is not a session keeps its midnight, so validation quarantines it."""
        if self.calendar.is_session(day):
            return self.calendar.bounds(day).open_ms
        return self.calendar.day_window_ms(day)[0]

    def _day_start_ms(self, start_ms: int) -> int:
        """Midnight (exchange time) of the day holding ``start_ms``: where daily bars are stamped."""
        day = datetime.fromtimestamp(start_ms / 1000, self.calendar.tz).date()
        return self.calendar.day_window_ms(day)[0]

    def _finish(self, frame: pd.DataFrame, interval: Interval, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Drop bars that have not ended yet and, if configured, minute bars outside regular
        sessions; bars outside the requested window stay, for validation to quarantine."""
        if frame.empty:
            return frame
        ts = frame["ts"].to_numpy(dtype=np.int64)
        now_ms = int(self._clock() * 1000)
        keep = np.ones(len(ts), dtype=bool)
        if interval == "1m":
            keep &= ts + MINUTE_MS <= now_ms
            if self.settings.session_only and not self.calendar.always_open:
                lo = datetime.fromtimestamp(start_ms / 1000, self.calendar.tz).date()
                hi = datetime.fromtimestamp((end_ms - 1) / 1000, self.calendar.tz).date()
                bounds = [self.calendar.bounds(d) for d in self.calendar.sessions(lo, hi)]
                in_window = (ts >= start_ms) & (ts < end_ms)
                keep &= ~in_window | session_mask(ts, bounds, interval)
        else:
            for i, t in enumerate(ts):
                day = datetime.fromtimestamp(t / 1000, self.calendar.tz).date()
                if self.calendar.is_session(day) and self.calendar.bounds(day).close_ms > now_ms:
                    keep[i] = False  # today's daily bar is still forming
        return frame[keep].reset_index(drop=True)

    # ---- one request, with the whole discipline ---------------------------------------------
    def _wait_for_slot(self) -> None:
        s = self.settings
        while True:
            rate = s.requests_per_minute * (1.0 - PACING_MARGIN)
            wait = self.ledger.take_vendor_token(self.name, rate, s.burst, self._clock())
            if wait <= 0:
                return
            if wait > s.max_wait:
                until, reason = self.ledger.vendor_block(self.name)
                cls = BannedError if until > self._clock() and "ban" in reason else RateLimitedError
                raise self._error(
                    cls, f"blocked for another {wait:.0f}s ({reason or 'rate limit'}); max_wait is {s.max_wait:.0f}s"
                )
            self._sleep(wait)

    def _get_json(self, url: str, params: dict[str, Any] | None = None, what: str = "") -> Any:
        """GET ``url`` and return its JSON body, or raise a typed ``VendorError``."""
        s = self.settings
        label = what or url.split("?")[0].removeprefix(self.base_url)
        last = ""
        last_cls: type[VendorError] = VendorUnavailableError
        for attempt in range(1, s.max_attempts + 1):
            self._wait_for_slot()
            backoff = backoff_delay(attempt, s.backoff_base, s.backoff_max, self._rng)
            try:
                resp = self._get_same_origin(url, params, label)
            except requests.RequestException as e:
                # never str(e): requests puts the full URL, query string and all, in its messages
                last = "timed out" if isinstance(e, requests.Timeout) else f"connection failed ({type(e).__name__})"
                last_cls = VendorUnavailableError
                self.ledger.record_vendor_call(self.name, "unavailable", f"{label}: {last}")
                if attempt < s.max_attempts:
                    self._sleep(backoff)
                continue
            self._after_response(resp)
            code = resp.status_code
            if code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    raise self._error(BadPayloadError, f"{label}: HTTP 200 but the body is not JSON") from None
                self.ledger.record_vendor_call(self.name, "ok", f"{label}: HTTP 200", 200)
                return body
            if code != 429 and code < 500:
                err = self._classify(resp, label)
                self.ledger.record_vendor_call(self.name, err.state, str(err), code)
                raise err
            wait = self._retry_after(resp)
            if code == 429 and wait is None:
                # no Retry-After (Polygon never sends one): the quota is per window, so wait it out
                wait, why = (
                    s.rate_window_seconds,
                    f"HTTP 429 without Retry-After: waiting the {s.rate_window_seconds:.0f}s window",
                )
            else:
                why = f"HTTP {code} Retry-After {wait:.0f}s" if wait is not None else ""
            if wait is not None:
                # published first, so no process or run sends this vendor anything before it expires
                self.ledger.block_vendor(self.name, self._clock() + wait, why)
            if code == 429:
                last, last_cls = f"HTTP 429 rate limited, waiting {wait:.0f}s", RateLimitedError
                self.ledger.record_vendor_call(self.name, "rate_limited", f"{label}: {last}", code)
            else:
                last, last_cls = f"HTTP {code}", VendorUnavailableError
                self.ledger.record_vendor_call(self.name, "unavailable", f"{label}: {last}", code)
            if wait is not None and wait > s.max_wait:
                raise self._error(last_cls, f"{label}: {why}, longer than max_wait {s.max_wait:.0f}s")
            if wait is None and attempt < s.max_attempts:
                self._sleep(backoff)
        raise self._error(last_cls, f"{label}: gave up after {s.max_attempts} attempts; last: {last}")

    def _get_same_origin(self, url: str, params: dict[str, Any] | None, label: str) -> requests.Response:
        """One GET that follows redirects only within the vendor's own origin."""
        s = self.settings
        allowed = origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self.session.get(
                url,
                params=params,
                headers=self._headers(),
                timeout=(s.connect_timeout, s.read_timeout),
                allow_redirects=False,
            )
            if not resp.is_redirect:
                return resp
            target = urljoin(resp.url or url, resp.headers.get("Location", ""))
            resp.close()
            if origin(target) != allowed:
                scheme, host = origin(target)
                err = self._error(
                    VendorError,
                    f"{label}: HTTP {resp.status_code} redirect to {scheme}://{host} refused: "
                    "credentials are never sent to another host or scheme",
                )
                self.ledger.record_vendor_call(self.name, "unavailable", str(err), resp.status_code)
                raise err
            url, params = target, None  # the Location carries the query the server wants
        err = self._error(VendorError, f"{label}: more than {MAX_REDIRECTS} redirects")
        self.ledger.record_vendor_call(self.name, "unavailable", str(err))
        raise err

    def _headers(self) -> dict[str, str]:
        return {}

    def _retry_after(self, resp: requests.Response) -> float | None:
        return parse_retry_after(resp.headers.get("Retry-After"), self._clock())

    def _after_response(self, resp: requests.Response) -> None:
        """Hook: read rate-limit headers."""

    def _message(self, resp: requests.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:200]
        if isinstance(body, dict):
            for k in ("message", "msg", "error"):
                if isinstance(body.get(k), str):
                    return str(body[k])
        return str(body)[:200]

    def _classify(self, resp: requests.Response, label: str) -> VendorError:
        """Typed error for a non-retryable status."""
        code, msg = resp.status_code, self._message(resp)
        if code in (401, 403):
            return self._error(AuthError, f"{label}: HTTP {code} {msg}")
        if code == 404 or (code in (400, 422) and ("symbol" in msg.lower() or "ticker" in msg.lower())):
            return self._error(BadSymbolError, f"{label}: HTTP {code} {msg}")
        return self._error(VendorError, f"{label}: request rejected, HTTP {code} {msg}")

    def _pages_exhausted(self) -> VendorError:
        return self._error(BadPayloadError, f"more than {MAX_PAGES} pages: pagination does not advance")
