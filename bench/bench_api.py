"""The status API under load, side by side with the CLI computing the same answers.

A history like a backfill's (run-less materializations with the backfill's metadata, on a
PostgreSQL instance, as in ``bench_coverage --scale``), a PostgreSQL warehouse holding each
session's lineage and the newest bar of each asset, then ``marketcov serve`` as a real process:

- cold start: from launching the server on a new home (empty coverage cache; the server warms
  it before accepting connections) until ``/healthz`` answers; then a restart with the cache;
- load: locust, headless, 20 clients asking ``/api/status/summary`` and ``/api/lineage`` for a
  90-day window of minute bars (p50/p95 per endpoint);
- the CLI: ``marketcov status --format json`` and ``marketcov coverage --format json``, each a
  new process, computing the same answers.

    .venv/bin/python -m bench.bench_api --symbols 12     # 24 assets: the default universe's size
    .venv/bin/python -m bench.bench_api --symbols 500    # 1,000 assets
    .venv/bin/python -m bench.bench_api --smoke
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from bench.bench_coverage import _materializations, scale_config
from bench.bench_ingest import drop_database, postgres_database
from bench.common import clean_env, report, timed, write_postgres_instance
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.universe import parse_universe
from marketcov_dagster.lib.warehouse import Warehouse, bars, partition_lineage
from marketcov_dagster.lib.windows import expected_sessions

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 20


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(home: Path, symbols: int, dagster_url: str, warehouse_url: str) -> tuple[int, dict[str, str]]:
    """The history, lineage and newest bars of ``symbols`` x (1d, 1m); returns the partitions."""
    home.mkdir(parents=True)
    config = scale_config(symbols)
    (home / "marketcov.yaml").write_text(yaml.safe_dump(config))
    write_postgres_instance(home, dagster_url)
    specs = parse_universe(config, "bench").specs
    now = datetime.now(UTC)
    stored = 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for spec in specs:
            events = _materializations(spec, now)
            instance.event_log_storage.store_event_batch(events)
            stored += len(events)
    wh = Warehouse(warehouse_url)
    wh.ensure_schema()
    cal = get_calendar("XNYS")
    with wh.begin() as conn:
        for spec in specs:
            sessions = expected_sessions(cal, spec.window_days, now)
            last = cal.bounds(sessions[-1])
            ts = last.open_ms if spec.interval == "1d" else last.close_ms - 60_000
            conn.execute(
                sa.insert(bars),
                [
                    {"symbol": spec.symbol, "interval": spec.interval, "ts": ts}
                    | dict.fromkeys(("open", "high", "low", "close", "volume"), 1.0)
                ],
            )
            if spec.interval == "1m":
                conn.execute(
                    sa.insert(partition_lineage),
                    [
                        {"symbol": spec.symbol, "interval": "1m", "session": d.isoformat(), "vendor": "synthetic"}
                        | {"run_id": "bench", "rows": 390, "expected_rows": 390, "checksum": "0" * 64}
                        | {"written_at": now}
                        for d in sessions
                    ],
                )
    wh.dispose()
    env = clean_env(home, home / "marketcov.yaml")
    env["MARKETCOV_WAREHOUSE_URL"] = warehouse_url
    return stored, env


def _ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    while True:
        try:
            if urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def start(env: dict[str, str], home: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    log = home / f"serve-{port}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "serve", "--port", str(port)],
        env=env,
        cwd=home,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _ready(base, proc, log)
    return proc, base, time.perf_counter() - t0


def load(
    base: str, symbols: int, seconds: int, tmp: Path, every: bool = False
) -> dict[str, tuple[float, float, float, float]]:
    """locust, headless: (p50 ms, p95 ms, p99 ms, requests/s) per endpoint; ``every``: all of them."""
    today = datetime.now(UTC).date()
    env = {
        **os.environ,
        "BENCH_ALL": "1" if every else "0",
        "BENCH_SYMBOLS": ",".join(f"S{i:04d}" for i in range(symbols)),
        "BENCH_START": (today - timedelta(days=90)).isoformat(),
        "BENCH_END": today.isoformat(),
    }
    prefix = tmp / "locust"
    locust = Path(sys.executable).with_name("locust")
    cmd = [str(locust), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless", "-u", str(CLIENTS)]
    cmd += ["-r", str(CLIENTS), "-t", f"{seconds}s", "--host", base, "--csv", str(prefix), "--only-summary"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        raise SystemExit(out.stderr[-3000:])
    stats: dict[str, tuple[float, float, float, float]] = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            if row["Name"] != "Aggregated":
                if int(row["Failure Count"]):
                    raise SystemExit(f"{row['Name']}: {row['Failure Count']} failed requests")
                stats[row["Name"]] = (
                    float(row["50%"]),
                    float(row["95%"]),
                    float(row["99%"]),
                    float(row["Requests/s"]),
                )
    return stats


def backfill(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    """``marketcov backfill`` of every symbol's whole daily window, writing while the clients read."""
    start = (datetime.now(UTC).date() - timedelta(days=1090)).isoformat()
    return subprocess.Popen(
        [sys.executable, "-m", "marketcov_dagster.cli", "backfill", "--intervals", "1d", "--start", start],
        env=env,
        cwd=home,
        stdout=(home / "backfill.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_backfill(proc: subprocess.Popen[bytes] | None) -> str:
    """Stop the writer (if still running) and say what it did meanwhile."""
    if proc is None:
        return ""
    running = proc.poll() is None
    if running:
        proc.terminate()
        proc.wait(timeout=120)
    return "a backfill writing throughout" if running else f"a backfill writing (it ended, exit {proc.returncode})"


def cli_seconds(env: dict[str, str], home: Path) -> float:
    def both() -> None:
        for command in (["status", "--format", "json"], ["coverage", "--format", "json"]):
            subprocess.run(
                [sys.executable, "-m", "marketcov_dagster.cli", *command],
                env=env,
                cwd=home,
                capture_output=True,
                check=True,
            )

    return timed(both)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=12, help="equity symbols, each with 1d and 1m (assets = 2x)")
    p.add_argument("--seconds", type=int, default=30, help="load duration")
    p.add_argument("--every-endpoint", action="store_true", help="load every read endpoint, not two")
    p.add_argument(
        "--with-backfill",
        action="store_true",
        help="a full-history daily backfill of every symbol writes into the same warehouse and instance meanwhile",
    )
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.symbols, args.seconds = 2, 5
    dagster_url, warehouse_url = postgres_database(), postgres_database()
    if dagster_url is None or warehouse_url is None:
        raise SystemExit("the API bench needs PostgreSQL (the production profile)")
    command = "python -m bench.bench_api " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            t0 = time.perf_counter()
            partitions, env = build(home, args.symbols, dagster_url, warehouse_url)
            built = time.perf_counter() - t0
            print(f"built {partitions:,} partitions in {built:.0f} s", file=sys.stderr)
            proc, base, cold = start(env, home)
            writer = backfill(env, home) if args.with_backfill else None
            try:
                stats = load(base, args.symbols, args.seconds, Path(tmp), args.every_endpoint)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                wrote = stop_backfill(writer)
            proc, base, warm_start = start(env, home)
            proc.terminate()
            proc.wait(timeout=30)
            cli = cli_seconds(env, home)
    finally:
        drop_database(dagster_url)
        drop_database(warehouse_url)
    assets = args.symbols * 2
    label = f"{assets:,} assets, {partitions:,} partitions" + (f", {wrote}" if args.with_backfill else "")
    rows = [
        [
            f"{label}: `{name}`",
            f"{p50:.0f} / {p95:.0f} / {p99:.0f} ms",
            f"{rps:.0f}",
            "p95 <= 200 ms, p99 <= 1 s " + ("✅" if p95 <= 200 and p99 <= 1000 else "❌"),
        ]
        for name, (p50, p95, p99, rps) in stats.items()
    ]
    rows += [
        [f"{label}: start on a new home, until ready (warms the coverage cache)", f"{cold:.1f} s", "-", "<= 5 s"],
        [f"{label}: restart with the cache", f"{warm_start:.1f} s", "-", "-"],
        [
            f"{label}: the CLI, `marketcov status` + `marketcov coverage` (JSON), new processes",
            f"{cli:.1f} s",
            "-",
            "-",
        ],
    ]
    report(
        f"Status API under load ({CLIENTS} clients, {args.seconds} s)",
        ["case", "p50 / p95 / p99 (or wall)", "requests/s", "target"],
        rows,
        command,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
