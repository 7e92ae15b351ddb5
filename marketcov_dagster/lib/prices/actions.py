"""Corporate actions as the ledger keeps them, and the vendors' documented formats parsed into them.

A split is ``ratio_from`` old shares becoming ``ratio_to`` new ones (Polygon ``split_from`` /
``split_to``, Alpaca ``old_rate`` / ``new_rate``): a 10-for-1 split is 1 → 10, a 1-for-5 reverse
split 5 → 1. A cash dividend is ``cash`` per share in ``currency``. ``ex_date`` is the first session
on the new basis (Polygon's ``execution_date``, Alpaca's ``ex_date``; never Alpaca's
``process_date``, which for dividends is the payment date).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Literal

Kind = Literal["split", "dividend"]
KINDS: tuple[Kind, ...] = ("split", "dividend")


class ActionPayloadError(ValueError):
    """A vendor's corporate-actions answer does not match its documented format."""


@dataclass(frozen=True)
class CorporateAction:
    symbol: str
    kind: Kind
    ex_date: date
    vendor: str
    vendor_id: str
    ratio_from: float = 1.0
    ratio_to: float = 1.0
    cash: float | None = None
    currency: str | None = None

    @property
    def key(self) -> tuple[str, str, date]:
        """What makes two vendors' rows the same action."""
        return (self.symbol, self.kind, self.ex_date)

    @property
    def split_ratio(self) -> float:
        """Shares after per share before: 10.0 for a 10-for-1 split, 0.2 for a 1-for-5 reverse one."""
        return self.ratio_to / self.ratio_from

    def describe(self) -> str:
        if self.kind == "split":
            kind = "reverse split" if self.ratio_to < self.ratio_from else "split"
            return f"{_num(self.ratio_to)}-for-{_num(self.ratio_from)} {kind}"
        return f"{self.cash:g} {self.currency or ''} dividend".replace("  ", " ")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ex_date"] = self.ex_date.isoformat()
        return d

    def same_terms(self, other: CorporateAction) -> bool:
        """Whether two vendors state the same action (ratios equal; amounts within half a cent)."""
        if self.kind != other.kind or self.ex_date != other.ex_date:
            return False
        if self.kind == "split":
            return math.isclose(self.split_ratio, other.split_ratio, rel_tol=1e-9)
        return abs((self.cash or 0.0) - (other.cash or 0.0)) < 0.005 and (self.currency or "USD") == (
            other.currency or "USD"
        )


def _num(x: float) -> str:
    return f"{x:g}"


def _field(row: Mapping[str, Any], name: str, vendor: str) -> Any:
    if name not in row or row[name] is None:
        raise ActionPayloadError(f"{vendor}: a corporate action lacks {name!r}: {dict(row)}")
    return row[name]


def _day(row: Mapping[str, Any], name: str, vendor: str) -> date:
    value = _field(row, name, vendor)
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ActionPayloadError(f"{vendor}: {name} {value!r} is not a date (YYYY-MM-DD)") from None


def _positive(row: Mapping[str, Any], name: str, vendor: str) -> float:
    value = _field(row, name, vendor)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ActionPayloadError(f"{vendor}: {name} {value!r} is not a positive number")
    return float(value)


def _rows(body: Any, key: str, vendor: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, dict):
        raise ActionPayloadError(f"{vendor}: expected an object, got {type(body).__name__}")
    rows = body.get(key) or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ActionPayloadError(f"{vendor}: {key!r} is not a list of objects")
    return rows


def _polygon_split(r: Mapping[str, Any], symbols: Mapping[str, str], kind: str | None = None) -> CorporateAction:
    """One split row, the same in ``/v3/reference/splits`` and ``/stocks/v1/splits``: v3 requires its
    ``id``; v1 (``kind``, its ``adjustment_type``) may omit it and is then keyed by ticker, date and kind."""
    ticker = str(_field(r, "ticker", "polygon"))
    ex = _day(r, "execution_date", "polygon")
    vendor_id = _field(r, "id", "polygon") if kind is None else r.get("id") or f"{ticker}:{ex.isoformat()}:{kind}"
    return CorporateAction(
        symbol=symbols.get(ticker, ticker),
        kind="split",
        ex_date=ex,
        vendor="polygon",
        vendor_id=str(vendor_id),
        ratio_from=_positive(r, "split_from", "polygon"),
        ratio_to=_positive(r, "split_to", "polygon"),
    )


def _polygon_dividend(r: Mapping[str, Any], symbols: Mapping[str, str]) -> CorporateAction:
    """One cash dividend row, the same in ``/v3/reference/dividends`` and ``/stocks/v1/dividends``
    (the documented mocks omit ``id``: then keyed by ticker and ex-date)."""
    ticker = str(_field(r, "ticker", "polygon"))
    ex = _day(r, "ex_dividend_date", "polygon")
    return CorporateAction(
        symbol=symbols.get(ticker, ticker),
        kind="dividend",
        ex_date=ex,
        vendor="polygon",
        vendor_id=str(r.get("id") or f"{ticker}:{ex.isoformat()}"),
        cash=_positive(r, "cash_amount", "polygon"),
        currency=str(r.get("currency") or "USD").upper(),
    )


def _known(r: Mapping[str, Any], field: str, default: str, known: Sequence[str]) -> str:
    value = str(r.get(field, default))
    if value not in known:
        raise ActionPayloadError(f"polygon: {field} {value!r} is not one of {', '.join(known)}")
    return value


def polygon_splits(body: Any, symbols: Mapping[str, str]) -> list[CorporateAction]:
    """``GET /v3/reference/splits`` results; ``symbols`` maps the vendor's ticker to ours."""
    return [_polygon_split(r, symbols) for r in _rows(body, "results", "polygon")]


SHARE_CHANGE_TYPES = ("forward_split", "reverse_split", "stock_dividend")  # /stocks/v1/splits adjustment_type
CASH_DISTRIBUTIONS = ("recurring", "special", "supplemental", "irregular", "unknown")  # /stocks/v1/dividends
CASH_DIVIDEND_TYPES = ("CD", "SC")  # v3: regular and special cash; capital gains distributions are not price events


def polygon_v1_splits(body: Any, symbols: Mapping[str, str]) -> list[CorporateAction]:
    """``GET /stocks/v1/splits`` results: the v3 fields (``ticker``, ``execution_date``,
    ``split_from``, ``split_to``) and ``adjustment_type``; a stock dividend changes the share
    count like a split and is kept as one. ``historical_adjustment_factor`` (Polygon's own
    cumulative factor) is not used: the ledger's factors are derived from the ratios."""
    return [
        _polygon_split(r, symbols, _known(r, "adjustment_type", "forward_split", SHARE_CHANGE_TYPES))
        for r in _rows(body, "results", "polygon")
    ]


def polygon_v1_dividends(body: Any, symbols: Mapping[str, str]) -> list[CorporateAction]:
    """``GET /stocks/v1/dividends`` results: ``ticker``, ``ex_dividend_date``, ``cash_amount``,
    ``currency`` and ``distribution_type`` (every kind a cash amount per share)."""
    out = []
    for r in _rows(body, "results", "polygon"):
        _known(r, "distribution_type", "recurring", CASH_DISTRIBUTIONS)  # every documented kind is cash
        out.append(_polygon_dividend(r, symbols))
    return out


def polygon_dividends(body: Any, symbols: Mapping[str, str]) -> list[CorporateAction]:
    """``GET /v3/reference/dividends`` results (cash dividends only)."""
    rows = _rows(body, "results", "polygon")
    return [_polygon_dividend(r, symbols) for r in rows if r.get("dividend_type", "CD") in CASH_DIVIDEND_TYPES]


ALPACA_TYPES = ("forward_split", "reverse_split", "cash_dividend")


def alpaca_actions(body: Any, symbols: Mapping[str, str]) -> list[CorporateAction]:
    """``GET /v1/corporate-actions``: one object keyed by plural type; other types are ignored."""
    if not isinstance(body, dict) or not isinstance(body.get("corporate_actions"), dict):
        raise ActionPayloadError("alpaca: expected an object with 'corporate_actions'")
    groups = body["corporate_actions"]
    out = []
    for plural in ("forward_splits", "reverse_splits"):
        for r in _rows(groups, plural, "alpaca"):
            sym = str(_field(r, "symbol", "alpaca"))
            out.append(
                CorporateAction(
                    symbol=symbols.get(sym, sym),
                    kind="split",
                    ex_date=_day(r, "ex_date", "alpaca"),
                    vendor="alpaca",
                    vendor_id=str(_field(r, "id", "alpaca")),
                    ratio_from=_positive(r, "old_rate", "alpaca"),
                    ratio_to=_positive(r, "new_rate", "alpaca"),
                )
            )
    for r in _rows(groups, "cash_dividends", "alpaca"):
        sym = str(_field(r, "symbol", "alpaca"))
        out.append(
            CorporateAction(
                symbol=symbols.get(sym, sym),
                kind="dividend",
                ex_date=_day(r, "ex_date", "alpaca"),
                vendor="alpaca",
                vendor_id=str(_field(r, "id", "alpaca")),
                cash=_positive(r, "rate", "alpaca"),
                currency="USD",
            )
        )
    return out


def within(
    actions: Iterable[CorporateAction], symbols: Sequence[str], first: date, last: date
) -> list[CorporateAction]:
    """The actions of ``symbols`` with an ex-date in ``first..last``, in ledger order."""
    wanted = set(symbols)
    return sorted(
        (a for a in actions if a.symbol in wanted and first <= a.ex_date <= last),
        key=lambda a: (a.symbol, a.ex_date, a.kind, a.vendor, a.vendor_id),
    )


@dataclass(frozen=True)
class Disagreement:
    symbol: str
    ex_date: date
    kind: str
    statements: tuple[tuple[str, str], ...]  # (vendor, what it says; "nothing" when it lacks the action)

    def describe(self) -> str:
        said = "; ".join(f"{v} says {what}" for v, what in self.statements)
        return f"{self.symbol} {self.kind} ex {self.ex_date.isoformat()}: {said}"


def disagreements(actions: Sequence[CorporateAction], vendors: Sequence[str]) -> list[Disagreement]:
    """Actions on which the vendors that were asked (``vendors``) do not say the same thing: a
    different ratio or amount, or one vendor lacking an action another has."""
    if len(vendors) < 2:
        return []
    by_key: dict[tuple[str, str, date], dict[str, CorporateAction]] = {}
    for a in actions:
        by_key.setdefault(a.key, {})[a.vendor] = a
    out = []
    for (symbol, kind, ex), said in sorted(by_key.items()):
        first = next(iter(said.values()))
        if len(said) == len(vendors) and all(first.same_terms(a) for a in said.values()):
            continue
        statements = tuple((v, said[v].describe() if v in said else "nothing") for v in vendors)
        out.append(Disagreement(symbol, ex, kind, statements))
    return out
