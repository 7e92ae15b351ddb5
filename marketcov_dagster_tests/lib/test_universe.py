from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketcov_dagster.lib.symbols import key_part_to_symbol, symbol_to_key_part
from marketcov_dagster.lib.universe import ConfigError, load_universe, parse_universe
from marketcov_dagster_tests.conftest import small_universe

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
    assert len(symbols) == 12 and len([s for s in u.specs if s.derived_from is None]) == 24
    # every symbol with minute bars gets 5m, 15m and 1h candles resampled from them
    derived = {(s.symbol, s.interval) for s in u.specs if s.derived_from == "1m"}
    assert derived == {(sym, iv) for sym in symbols for iv in ("5m", "15m", "1h")}
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
        (["intervals", "3m"], {"window_days": 10}, "unknown interval"),
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


def test_an_error_in_a_source_interval_is_shown_once_not_under_each_derived_one() -> None:
    with pytest.raises(ConfigError) as e:
        parse_universe(with_change(["intervals", "1m", "window_days"], -5), "marketcov.yaml")
    assert str(e.value).count("window_days") == 1 and "intervals.1m.window_days" in str(e.value), e.value
    data = with_change(["intervals", "1m", "window_days"], -5)
    data["intervals"]["5m"]["window_days"] = -7  # the derived interval's own error is its own
    with pytest.raises(ConfigError) as both:
        parse_universe(data, "marketcov.yaml")
    assert "intervals.1m.window_days" in str(both.value) and "intervals.5m.window_days" in str(both.value)
    assert "15m" not in str(both.value)


@pytest.mark.parametrize("cron", ["not a cron", "0 25 * * *", "*/0 * * * *", "0 0 32 * *", "0 0 * * funday"])
def test_a_bad_reconciliation_cron_is_refused_at_load(cron: str) -> None:
    data = copy.deepcopy(BASE)
    data["reconciliation"] = {"cron": cron}
    with pytest.raises(ConfigError, match=r"reconciliation\.cron"):
        parse_universe(data, "marketcov.yaml")
    data["reconciliation"] = {"cron": "*/15 9-16 * jan,jul mon-fri"}
    assert parse_universe(data, "marketcov.yaml").config.reconciliation.cron.startswith("*/15")


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


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["intervals", "1m", "window_days"], True, "intervals.1m.window_days"),
        (["intervals", "1m", "window_days"], "30", "intervals.1m.window_days"),
        (["intervals", "1m", "window_days"], 30.5, "intervals.1m.window_days"),
        (["intervals", "1m", "expire"], "yes", "intervals.1m.expire"),
        (["intervals", "1m", "expire"], 1, "intervals.1m.expire"),
        (["intervals", "1m", "freshness_threshold_minutes"], float("inf"), "intervals.1m.freshness_threshold_minutes"),
        (["intervals", "1m", "min_completeness"], float("nan"), "intervals.1m.min_completeness"),
        (["asset_classes", "crypto", "symbols"], "BTCUSDT", "asset_classes.crypto.symbols"),
    ],
)
def test_no_type_coercion(path: list[str | int], value: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_universe(with_change(path, value))


def test_yaml_spellings_are_not_coerced_either(tmp_path: Path) -> None:
    text = (ROOT / "marketcov.yaml").read_text().replace("window_days: 90 ", 'window_days: "90" ')
    assert '"90"' in text
    (tmp_path / "u.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"intervals\.1m\.window_days"):
        load_universe(tmp_path / "u.yaml")
    inf = (ROOT / "marketcov.yaml").read_text().replace("min_completeness: 0.98", "min_completeness: .inf")
    (tmp_path / "u.yaml").write_text(inf)
    with pytest.raises(ConfigError, match=r"intervals\.1m\.min_completeness"):
        load_universe(tmp_path / "u.yaml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # a second asset_classes block would silently replace the first
        ("asset_classes:\n  a: {}\nasset_classes:\n  b: {}\n", "asset_classes"),
        ("intervals:\n  1m:\n    window_days: 90\n    window_days: 30\n", "window_days"),
    ],
)
def test_a_key_given_twice_is_an_error(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "u.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"duplicate key '{key}' \(first at line \d+\)"):
        load_universe(tmp_path / "u.yaml")


def test_a_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "u.yaml").write_bytes((ROOT / "marketcov.yaml").read_bytes().replace(b"AAPL", b"A\xe9PL"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_universe(tmp_path / "u.yaml")


def test_minute_completeness_defaults_to_what_the_default_config_documents() -> None:
    data = copy.deepcopy(BASE)
    documented = data["intervals"]["1m"].pop("min_completeness")
    u = parse_universe(data)
    assert {s.min_completeness for s in u.specs if s.interval == "1m"} == {documented}


def test_indicator_assets_are_keyed_apart_from_their_bars() -> None:
    u = small_universe(indicators={"intervals": ["1d"]})
    bars = u.select(symbols=["BRK.B"])
    (ind,) = u.indicators_of(bars)  # only the 1d bars have indicators
    assert ind.key_str == "indicators/1d/BRK_2E_B" and ind.key_path == ind.indicator_key_path
    assert (ind.symbol, ind.interval, ind.calendar) == ("BRK.B", "1d", "XNYS")
    assert u.indicators_of([ind]) == []  # not indicators of indicators
    assert small_universe().indicators_of(bars) == []  # none configured
