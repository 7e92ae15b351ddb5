"""The ``marketcov`` command: backfill through Dagster, report coverage, freshness status, vendor
health and the remediation log.

Imports are lazy so ``marketcov --help`` and argument errors answer fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from marketcov_dagster.lib.universe import AssetSpecification, Universe


def _csv_list(value: str) -> list[str]:
    """A comma-separated list; an empty one is refused (it would otherwise mean "everything")."""
    items = [v.strip() for v in value.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError(f"{value!r} names nothing: give at least one value")
    if not all(items):
        raise argparse.ArgumentTypeError(f"{value!r} has an empty item")
    return items


MAX_WORKERS = 64


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return n


def _workers(value: str) -> int:
    n = _positive_int(value)
    if n > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{value!r} is more than {MAX_WORKERS} worker processes")
    return n


def _sub(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> argparse.ArgumentParser:
    from marketcov_dagster.cli_help import SUBCOMMANDS, description

    return sub.add_parser(
        name,
        help=SUBCOMMANDS[name][0],
        description=description(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marketcov", description="Complete, verified, fresh OHLCV bars.")
    p.add_argument("--config", help="universe YAML (default: $MARKETCOV_CONFIG or ./marketcov.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def filters(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--symbols", type=_csv_list, help="comma-separated symbols")
        sp.add_argument("--intervals", type=_csv_list, help="comma-separated intervals (1d,1m)")
        sp.add_argument("--asset-class", type=_csv_list, dest="asset_classes", help="comma-separated asset classes")

    b = _sub(sub, "backfill")
    filters(b)
    b.add_argument(
        "--start",
        help="first session, YYYY-MM-DD (default: the latest 3 closed sessions; for 1m also the one trading now)",
    )
    b.add_argument("--end", help="last session, YYYY-MM-DD (default: the latest opened session)")
    b.add_argument(
        "--indicators",
        action="store_true",
        help="also the indicator assets of the selected symbols and intervals (after their bars)",
    )
    b.add_argument(
        "--workers",
        type=_workers,
        help=f"processes running the runs side by side, at most {MAX_WORKERS} and never more than "
        "the assets selected (default: one per core, at most 4, and at most one per 500 partitions)",
    )

    c = _sub(sub, "coverage")
    filters(c)
    c.add_argument(
        "--indicators",
        action="store_true",
        help="also the indicator assets of the selected symbols and intervals",
    )
    c.add_argument("--format", choices=("table", "json", "csv"), default="table")
    c.add_argument(
        "--view",
        choices=("summary", "segments", "sessions"),
        default="summary",
        help="csv only: one row per asset (counts), per segment, or per missing/partial session",
    )

    v = _sub(sub, "vendors")
    v.add_argument("--format", choices=("table", "json"), default="table")

    st = _sub(sub, "status")
    filters(st)
    st.add_argument(
        "--indicators",
        action="store_true",
        help="also the indicator assets of the selected symbols and intervals (fresh by their newest row)",
    )
    st.add_argument("--format", choices=("table", "json"), default="table")

    r = _sub(sub, "remediation")
    filters(r)
    r.add_argument(
        "--kind", type=_csv_list, dest="kinds", help=f"comma-separated kinds: {', '.join(REMEDIATION_KINDS)}"
    )
    r.add_argument("--vendor", type=_csv_list, dest="vendors", help="comma-separated vendors")
    r.add_argument("--session", help="one session, YYYY-MM-DD")
    r.add_argument("--since", help="entries logged on or after this day, YYYY-MM-DD (UTC)")
    r.add_argument("--limit", type=int, help="only the latest N entries")
    r.add_argument("--format", choices=("table", "json", "csv"), default="table")
    bs = _sub(sub, "bars")
    bs.add_argument("symbol", help="one symbol of the universe, e.g. AAPL")
    bs.add_argument("--interval", default="1d", help="interval (default 1d)")
    bs.add_argument("--start", help="first session, YYYY-MM-DD (default: the window's first)")
    bs.add_argument("--end", help="last session, YYYY-MM-DD (default: the latest opened session)")
    bs.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    bs.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    bs.add_argument(
        "--indicators",
        action="store_true",
        help="add one column per indicator (sma_20, ema_12, rsi_14, atr_14, adx_14, macd, ret_1, ...; empty while "
        "warming up); the interval must be listed under indicators: in the universe",
    )

    u = _sub(sub, "ui")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; the UI has no login)")
    u.add_argument("--port", type=_port, default=3000, help="port (default 3000)")
    u.add_argument("--no-daemon", action="store_true", help="the UI only: no schedules, sensors or run queue")
    sv = _sub(sub, "serve")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    sv.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    return p


def _port(value: str) -> int:
    n = _positive_int(value)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return n


from marketcov_dagster.lib.kinds import REMEDIATION_KINDS  # noqa: E402  (a leaf module: --help stays fast)


def _warehouse_commands(args: argparse.Namespace, symbols: list[str] | None, specs: list[AssetSpecification]) -> int:
    """``status``, ``vendors`` and ``remediation`` read only the warehouse: no Dagster instance needed."""
    import pandas as pd

    from marketcov_dagster.lib.jsonout import dumps
    from marketcov_dagster.lib.warehouse import existing_or_empty
    from marketcov_dagster.lib.windows import BadRangeError, parse_day

    if args.command == "remediation":  # refuse bad filters before touching the warehouse
        since = parse_day(args.since, "--since") if args.since is not None else None
        session = parse_day(args.session, "--session").isoformat() if args.session is not None else None
        unknown = sorted(set(args.kinds or ()) - set(REMEDIATION_KINDS))
        if unknown:
            raise BadRangeError(f"--kind: unknown kind(s) {unknown}; known: {list(REMEDIATION_KINDS)}")
        if args.limit is not None and args.limit <= 0:
            raise BadRangeError("--limit must be a positive number")
    wh = existing_or_empty()  # read-only: never creates the warehouse
    if args.command == "status":
        from marketcov_dagster.lib.status import status_report, to_text

        report = status_report(wh, specs, datetime.now(UTC))
        print(dumps(report) if args.format == "json" else to_text(report))
        return 0
    if args.command == "vendors":
        statuses = wh.vendor_statuses()
        for row in statuses:
            until, reason = wh.vendor_block(row["vendor"])
            row["blocked_until"] = datetime.fromtimestamp(until, UTC).isoformat() if until > time.time() else None
            row["blocked_reason"] = (reason or None) if row["blocked_until"] else None
        if args.format == "json":
            print(dumps(statuses))
        elif not statuses:
            print("no vendor has been called yet")
        else:
            cols = ["vendor", "state", "since", "last_ok_at", "last_failure_at", "calls", "failures", "rate_limited"]
            df = pd.DataFrame(statuses)
            print(df[[*cols, "detail"]].to_string(index=False))
        return 0
    df = wh.remediation(
        symbols=symbols,
        intervals=args.intervals,
        kinds=args.kinds,
        vendors=args.vendors,
        session=session,
        since=datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None,
        limit=args.limit,
    )
    if args.format == "json":
        print(dumps(df.to_dict("records")))
    elif args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif df.empty:
        print("no remediation entries match")
    else:
        print(df.drop(columns=["id"]).to_string(index=False, max_colwidth=90))
    return 0


def _ensure_dagster_home() -> None:
    """``DAGSTER_HOME``, or the default home outside the source tree (created on first use)."""
    from marketcov_dagster.lib.home import resolve_home

    given = bool(os.environ.get("DAGSTER_HOME"))
    home, created = resolve_home()
    if created:
        hint = "with the default dagster.yaml" if given else "(set DAGSTER_HOME to use another)"
        print(f"marketcov: note: created the instance home {home} {hint}", file=sys.stderr)


@contextmanager
def _instance_lock() -> Iterator[None]:
    """Serialise instance creation between ``marketcov`` processes: two first-time processes on a
    new DAGSTER_HOME would otherwise race to create Dagster's SQLite tables."""
    import fcntl

    with open(Path(os.environ["DAGSTER_HOME"]) / ".marketcov.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input or a broken environment is one line on stderr and exit 2,
    an interrupt one line and exit 130."""
    args = _parser().parse_args(argv)
    from marketcov_dagster.lib.universe import ConfigError
    from marketcov_dagster.lib.warehouse import WarehouseError
    from marketcov_dagster.lib.windows import BadRangeError

    signal.signal(signal.SIGTERM, _interrupt)  # a stop request ends like Ctrl-C: cleanly, one line
    try:
        return _run(args)
    except (ConfigError, BadRangeError, WarehouseError) as e:
        print(f"marketcov: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"marketcov: {args.command} interrupted ({e.args[0] if e.args else 'SIGINT'})", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from marketcov_dagster.lib.universe import ConfigError, load_universe
    from marketcov_dagster.lib.windows import parse_day

    universe = load_universe(args.config)
    if args.command == "ui":
        return _ui(args)
    if args.command == "serve":
        from marketcov_dagster.cli_serve import api_token, serve

        api_token(args.host)  # refuse an open bind before touching anything
        _ensure_dagster_home()
        with _instance():  # created under the lock, never raced by a webserver or daemon starting too
            pass
        return serve(universe, args.host, args.port)
    if args.command == "bars":
        from marketcov_dagster.cli_bars import export_bars

        spec = universe.select([args.symbol], [args.interval])  # unknown symbol or interval: one line
        start = parse_day(args.start, "--start") if args.start is not None else None
        end = parse_day(args.end, "--end") if args.end is not None else None
        if args.indicators and args.interval not in universe.config.indicators.intervals:
            raise ConfigError(
                f"--indicators: the universe computes indicators for {universe.config.indicators.intervals or 'no'} "
                f"interval(s), not {args.interval} (add it under indicators: intervals:)"
            )
        _ensure_dagster_home()  # after every check of the input: a refused command creates nothing
        return export_bars(spec[0], start, end, args.format, args.output, args.indicators)
    selecting = args.command != "vendors"
    specs = universe.select(args.symbols, args.intervals, args.asset_classes) if selecting else []
    if args.command in ("coverage", "status") and args.indicators:
        specs = [*specs, *_indicators_of(universe, specs)]
    start = parse_day(args.start, "--start") if getattr(args, "start", None) is not None else None
    end = parse_day(args.end, "--end") if getattr(args, "end", None) is not None else None
    _ensure_dagster_home()
    if args.command in ("status", "vendors", "remediation"):
        return _warehouse_commands(args, args.symbols if args.command == "remediation" else None, specs)
    if args.command == "backfill":
        return _backfill(args, universe, specs, start, end)
    return _coverage(args, specs)


def _ui(args: argparse.Namespace) -> int:
    from marketcov_dagster.cli_ui import run_ui
    from marketcov_dagster.lib.universe import config_path

    _ensure_dagster_home()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        note = f"the Dagster UI has no login; anyone who reaches {args.host} can use it"
        print(f"marketcov: note: {note}", file=sys.stderr)
    config = Path(args.config) if args.config else config_path()
    with _instance():  # created under the lock: the webserver and daemon then only open it
        pass
    return run_ui(Path(os.environ["DAGSTER_HOME"]), config, args.host, args.port, daemon=not args.no_daemon)


@contextmanager
def _instance() -> Iterator[DagsterInstance]:
    """The instance under DAGSTER_HOME, created under a lock; runs of a killed backfill found on
    it are marked failed first, so they free their queue slots."""
    import dagster as dg

    from marketcov_dagster.defs.orphans import fail_orphaned_runs
    from marketcov_dagster.lib.universe import ConfigError

    with _instance_lock():
        try:
            instance = dg.DagsterInstance.get()
        except dg.DagsterError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"the Dagster instance in {os.environ['DAGSTER_HOME']} cannot start: {first}") from None
    with instance:
        for run_id in fail_orphaned_runs(instance):
            print(f"marketcov: note: run {run_id} lost its process; marked failed", file=sys.stderr)
        yield instance


def _backfill(
    args: argparse.Namespace, universe: Universe, specs: list[AssetSpecification], start: date | None, end: date | None
) -> int:
    from functools import partial

    from marketcov_dagster.defs.backfill import auto_workers, instance_hint, plan_backfill, run_backfill
    from marketcov_dagster.defs.build import build_definitions
    from marketcov_dagster.defs.history import coverage_for
    from marketcov_dagster.defs.orphans import fail_orphaned_runs
    from marketcov_dagster.lib import coverage as cov
    from marketcov_dagster.lib.warehouse import Warehouse

    now = datetime.now(UTC)
    indicators = _indicators_of(universe, specs) if args.indicators else []
    plans = plan_backfill(specs, start, end, now, universe.config.indicators.intervals if args.indicators else ())
    for p in plans:
        if p.skipped:
            print(f"marketcov: note: {p.job_name} skipped: {p.skipped}", file=sys.stderr)
    n_assets = sum(len(p.specs) for p in plans if p.sessions)
    workers = min(args.workers or auto_workers(plans), max(1, n_assets))
    if args.workers and args.workers > workers:
        print(f"marketcov: note: --workers {args.workers} capped at {workers}, one per asset", file=sys.stderr)
    Warehouse().dispose()  # a bad URL or a database that is down: one line, before any run
    with _instance() as instance:
        hint = instance_hint(instance, plans)
        if hint:
            print(f"marketcov: note: {hint}", file=sys.stderr)
        try:
            runs = run_backfill(partial(build_definitions, universe, now), instance, plans, workers)
        except KeyboardInterrupt:
            fail_orphaned_runs(instance)  # the runs of the workers just stopped
            raise
        for r in runs:
            state = "ok" if r.success else f"FAILED: {r.error}"
            print(
                f"{r.job_name}: {r.assets} asset(s) x {r.sessions} session(s) "
                f"{r.first_session}..{r.last_session} run {r.run_id[:8]} {state}"
            )
        print()
        print(cov.to_table(coverage_for(instance, [*specs, *indicators])))
    return 0 if all(r.success for r in runs) else 1


def _indicators_of(universe: Universe, specs: list[AssetSpecification]) -> list[AssetSpecification]:
    """``--indicators``: the indicator assets of the selected assets; none is an error."""
    from marketcov_dagster.lib.universe import ConfigError

    indicators = universe.indicators_of(specs)
    if not indicators:
        raise ConfigError(
            f"--indicators: none of the selected intervals has indicators "
            f"(the universe computes them for {universe.config.indicators.intervals or 'none'})"
        )
    return indicators


def _coverage(args: argparse.Namespace, specs: list[AssetSpecification]) -> int:
    from marketcov_dagster.defs.history import coverage_for
    from marketcov_dagster.lib import coverage as cov
    from marketcov_dagster.lib.jsonout import dumps
    from marketcov_dagster.lib.universe import ConfigError

    if args.view != "summary" and args.format != "csv":
        raise ConfigError(f"--view {args.view} is a CSV view: add --format csv (JSON already lists them)")

    with _instance() as instance:
        assets = coverage_for(instance, specs)
    if args.format == "json":
        print(dumps(cov.report(assets, datetime.now(UTC))))
    elif args.format == "csv":
        sys.stdout.write(cov.to_csv(assets, args.view))
    else:
        print(cov.to_table(assets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
