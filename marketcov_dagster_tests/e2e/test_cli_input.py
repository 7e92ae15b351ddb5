"""Bad input and a broken environment: one clear line on stderr, a non-zero exit, no traceback,
nothing written. Each case runs the real ``marketcov`` process."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from marketcov_dagster_tests.e2e.conftest import base_env, marketcov

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

WAREHOUSE = "marketcov_warehouse.sqlite"


def _refused(args: list[str], env: dict[str, str], message: str, cwd: Path | None = None) -> None:
    out = marketcov(args, env, cwd)
    assert out.returncode == 2, (args, out.returncode, out.stdout[-500:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr, (args, out.stderr)
    assert message in out.stderr, (args, out.stderr)
    errors = [line for line in out.stderr.splitlines() if line.startswith("marketcov")]
    assert len(errors) == 1, (args, out.stderr)


BAD_ARGS = [
    (["backfill", "--symbols", ""], "'' names nothing"),
    (["backfill", "--symbols", ","], "',' names nothing"),
    (["backfill", "--symbols", "AAPL,"], "'AAPL,' has an empty item"),
    (["backfill", "--intervals", ""], "'' names nothing"),
    (["backfill", "--asset-class", " "], "' ' names nothing"),
    (["coverage", "--symbols", ""], "'' names nothing"),
    (["backfill", "--start", ""], "--start: '' is not a date (use YYYY-MM-DD)"),
    (["backfill", "--end", ""], "--end: '' is not a date"),
    (["backfill", "--start", "20261102"], "--start: '20261102' is not a date (use YYYY-MM-DD)"),
    (["backfill", "--start", "2026-W45-1"], "--start: '2026-W45-1' is not a date"),
    (["backfill", "--start", "2026-11-2"], "--start: '2026-11-2' is not a date"),
    (["remediation", "--since", ""], "--since: '' is not a date"),
    (["remediation", "--session", "20241129"], "--session: '20241129' is not a date"),
    (["backfill", "--workers", "99999999999999999999999"], "is more than 64 worker processes"),
    (["backfill", "--workers", "1000"], "'1000' is more than 64 worker processes"),
    (["remediation", "--limit", "9" * 31], "is more than 1,000,000"),
    (["remediation", "--limit", "0"], "'0' is not a positive whole number"),
    (["remediation", "--vendor", "nasdaq"], "--vendor: unknown vendor(s) ['nasdaq']"),
    (["bars", "AAPL", "--output", "/nonexistent-dir/aapl.csv"], "the directory /nonexistent-dir does not exist"),
    (["bars", "AAPL", "--output", "/tmp"], "--output /tmp is a directory"),
    (["bars", "AAPL", "--output", "/proc/version"], "is a kernel file"),
    (["ui", "--host", "no-such-host.invalid"], "--host 'no-such-host.invalid' is not an address or a name"),
    (["serve", "--host", "no-such-host.invalid"], "is not an address or a name"),
]


def test_bad_arguments_are_refused_and_write_nothing(home: Path) -> None:
    env = base_env(home, None)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda case: _refused(case[0], env, case[1]), BAD_ARGS))
    assert not (home / WAREHOUSE).exists()
    assert not (home / "storage").exists() and not (home / "history").exists()
    assert not (home / "workspace.yaml").exists(), "a refused ui wrote into the home"


def test_an_argument_error_is_one_line_pointing_at_help(home: Path) -> None:
    env = base_env(home, None)
    for args, message in (
        (["backfill", "--workers", "0"], "marketcov: argument --workers: '0' is not a positive whole number"),
        (["bogus"], "marketcov: argument command: invalid choice: 'bogus'"),
        (["coverage", "--format", "xml"], "marketcov: argument --format: invalid choice: 'xml'"),
    ):
        out = marketcov(args, env)
        assert out.returncode == 2 and out.stdout == "", out
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(message) and "--help)" in out.stderr, out.stderr


@pytest.mark.parametrize("args", [["coverage"], ["status", "--format", "json"], ["vendors", "--format", "json"]])
def test_a_reader_that_goes_away_is_no_traceback(home: Path, args: list[str]) -> None:
    """``marketcov coverage | head -1``: the reader closes the pipe; the command stops quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", *args],
        env=base_env(home, None),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as head does once it has its lines
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode in (0, 141), (proc.returncode, err)


def test_a_refused_command_creates_no_instance_home(tmp_path: Path) -> None:
    """On a machine with no instance yet, bad input is refused before the default home is made."""
    env = {k: v for k, v in base_env(tmp_path, None).items() if k != "DAGSTER_HOME"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["MARKETCOV_CONFIG"] = str(Path(__file__).resolve().parents[2] / "marketcov.yaml")
    for args, message in (
        (["bars", "AAPL", "--interval", "1m", "--indicators"], "computes indicators for ['1d']"),
        (["bars", "ZZZZ", "--interval", "1d"], "unknown symbol(s) ['ZZZZ']"),
        (["backfill", "--start", "2026-11-31"], "--start: '2026-11-31' is not a date"),
    ):
        _refused(args, env, message, tmp_path)
    assert not (tmp_path / "data").exists()


def test_a_broken_environment_is_one_line_naming_what_to_fix(home: Path, tmp_path: Path) -> None:
    env = base_env(home, None)
    _refused(["coverage"], {**env, "DAGSTER_HOME": str(tmp_path / "missing")}, "is not an existing folder", home)
    _refused(["status"], {**env, "DAGSTER_HOME": "relative/home"}, "is a relative path", home)
    _refused(
        ["status"], {**env, "MARKETCOV_WAREHOUSE_URL": "not a url"}, "MARKETCOV_WAREHOUSE_URL is not a database URL"
    )
    down = "postgresql+psycopg2://postgres:hunter2@127.0.0.1:9/marketcov"  # nothing listens on port 9
    for command in (["status"], ["backfill", "--symbols", "AAPL"]):
        out = marketcov(command, {**env, "MARKETCOV_WAREHOUSE_URL": down})
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "unreachable" in out.stderr and "hunter2" not in out.stderr, out.stderr
    assert not (home / "storage").exists(), "a backfill with the warehouse down started runs"
    bad = home / "latin1.yaml"
    bad.write_bytes((home / "marketcov.yaml").read_bytes().replace(b"AAPL", b"A\xc4PL"))
    _refused(["--config", str(bad), "status"], env, "not UTF-8")
    (home / "dup.yaml").write_text((home / "marketcov.yaml").read_text() * 2)
    _refused(["--config", str(home / "dup.yaml"), "coverage"], env, "found duplicate key")
    assert not (home / WAREHOUSE).exists()
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'wh.sqlite'}"
    _refused(["backfill"], {**env, "MARKETCOV_WAREHOUSE_URL": missing}, "no-such-dir does not exist (create it")
    assert not (tmp_path / "no-such-dir").exists()
    cfg = yaml.safe_load((home / "marketcov.yaml").read_text())
    cfg["reconciliation"] = {"cron": "not a cron"}
    (home / "cron.yaml").write_text(yaml.safe_dump(cfg))
    _refused(["--config", str(home / "cron.yaml"), "backfill"], env, "'not a cron' has 3 field(s)")
    cfg["reconciliation"] = {"cron": "0 25 * * *"}
    (home / "cron.yaml").write_text(yaml.safe_dump(cfg))
    _refused(["--config", str(home / "cron.yaml"), "coverage"], env, "hour '25' is outside 0-23")


def test_read_only_commands_create_no_warehouse(home: Path) -> None:
    env = base_env(home, None)
    for command in (["status"], ["vendors"], ["remediation"], ["coverage"], ["status", "--format", "json"]):
        out = marketcov(command, env)
        assert out.returncode == 0, (command, out.stderr)
    assert not (home / WAREHOUSE).exists()


def test_two_first_time_processes_on_a_new_home_both_succeed(home: Path) -> None:
    env = base_env(home, None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "marketcov_dagster.cli", "coverage", "--format", "json"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert out.lstrip().startswith("{"), out[:200]
        assert p.returncode == 0 and "already exists" not in err, err[-2000:]


@pytest.mark.parametrize("workers", ["64"])
def test_more_workers_than_assets_are_capped(home: Path, workers: str) -> None:
    env = base_env(home, None)
    out = marketcov(["backfill", "--symbols", "BTCUSDT", "--intervals", "1d", "--workers", workers], env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"--workers {workers} capped at 1" in out.stderr


def test_a_failed_runs_line_names_its_cause(home: Path) -> None:
    import yaml

    from marketcov_dagster_tests.fakes.vendor_servers import FakeBinance, Fault
    from marketcov_dagster_tests.vendors.conftest import FAST

    cfg = {
        "intervals": {"1d": {"window_days": 30}},
        "asset_classes": {
            "crypto": {"calendar": "24/7", "vendors": ["binance"], "intervals": ["1d"], "symbols": ["ZZZUSDT"]}
        },
        "vendors": {"binance": FAST},
    }
    (home / "marketcov.yaml").write_text(yaml.safe_dump(cfg))
    with FakeBinance() as server:
        server.script = [Fault(400, {}, b'{"code": -1121, "msg": "Invalid symbol."}')] * 10
        out = marketcov(["backfill"], {**base_env(home, None), "MARKETCOV_BINANCE_BASE_URL": server.url})
    assert out.returncode == 1, out.stderr[-2000:]
    (line,) = [x for x in out.stdout.splitlines() if "FAILED" in x]
    assert "FAILED: ohlcv_24_7_1d: ohlcv/1d/ZZZUSDT: VendorError: all vendors" in line, line
    assert "Invalid symbol. (code -1121)" in line and "Execution of step" not in line, line
