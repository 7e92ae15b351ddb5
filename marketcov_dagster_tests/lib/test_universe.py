from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketcov_dagster.lib.symbols import key_part_to_symbol, symbol_to_key_part
from marketcov_dagster.lib.universe import ConfigError, load_universe, parse_universe

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "marketcov.yaml").read_text())


def with_change(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return data


def test_default_universe_loads() -> None:
    u = load_universe(ROOT / "marketcov.yaml")
    symbols = {s.symbol for s in u.specs}
    assert {"AAPL", "MSFT", "SPY", "QQQ", "BTCUSDT", "ETHUSDT"} <= symbols
    assert len(symbols) == 12 and len(u.specs) == 24
    crypto = [s for s in u.specs if s.asset_class == "crypto"]
    assert {s.calendar for s in crypto} == {"24/7"}
    assert {s.window_days for s in u.specs if s.interval == "1d"} == {1095}
    assert {s.window_days for s in u.specs if s.interval == "1m"} == {90}


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["asset_classes", "us_equity", "intervals"], ["1d", "7m"], "asset_classes.us_equity.intervals"),
        (["asset_classes", "us_equity", "calendar"], "XNOPE", "asset_classes.us_equity.calendar"),
        (["asset_classes", "crypto", "symbols"], ["BTCUSDT", "AAPL"], "duplicate symbol 'AAPL'"),
        (["asset_classes", "us_equity", "symbols"], ["AAPL", "aa pl"], "malformed symbol"),
        (["asset_classes", "us_equity", "vendors"], ["bloomberg"], "unknown vendor"),
        (["intervals", "1m", "window_days"], 0, "intervals.1m.window_days"),
        (["intervals", "1m", "window_days"], 5000, "intervals.1m.window_days"),
        (["intervals", "1m", "min_completeness"], 1.5, "intervals.1m.min_completeness"),
        (["intervals", "5m"], {"window_days": 10}, "unknown interval"),
        (["asset_classes", "us_equity", "colour"], "red", "asset_classes.us_equity.colour"),
        (["intervals", "1m", "refresh_every_minutes"], 0, "intervals.1m.refresh_every_minutes"),
        (["intervals", "1d", "freshness_threshold_minutes"], -5, "intervals.1d.freshness_threshold_minutes"),
        (["intervals", "1d", "schedule_delay_minutes"], 600, "intervals.1d.schedule_delay_minutes"),
        (["healing"], {"max_runs_per_tick": 0}, "healing.max_runs_per_tick"),
        (["alerting"], {"freshness_interval_seconds": 1}, "alerting.freshness_interval_seconds"),
        (["alerting"], {"every": 5}, "alerting.every"),
    ],
)
def test_bad_config_names_the_field(path: list[str | int], value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_universe(with_change(path, value), "marketcov.yaml")
    assert field in str(e.value)


def test_missing_or_unparsable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_universe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("intervals: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_universe(bad)


def test_select_rejects_unknown_filters() -> None:
    u = parse_universe(BASE)
    assert {s.symbol for s in u.select(symbols=["AAPL"], intervals=["1m"])} == {"AAPL"}
    with pytest.raises(ConfigError, match="unknown symbol"):
        u.select(symbols=["NOPE"])


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BTC/USD", "EURUSD=X", "^GSPC", "A_B", "X-1"])
def test_symbol_key_mapping_is_reversible(symbol: str) -> None:
    part = symbol_to_key_part(symbol)
    assert part.replace("_", "").isalnum()
    assert key_part_to_symbol(part) == symbol
