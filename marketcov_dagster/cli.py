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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

    from marketcov_dagster.defs.backfill import GroupPlan, GroupRun
    from marketcov_dagster.lib.universe import AssetSpecification, SlaSettings, Universe


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


MAX_LIMIT = 1_000_000


def _limit(value: str) -> int:
    n = _positive_int(value)
    if n > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value[:20]!r}{'...' if len(value) > 20 else ''} is more than {MAX_LIMIT:,}")
    return n


def _workers(value: str) -> int:
    n = _positive_int(value)
    if n > MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{value!r} is more than {MAX_WORKERS} worker processes")
    return n


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line, exit 2, pointing at the subcommand's --help (not the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"marketcov: {message} (see {self.prog} --help)\n")


def _sub(sub: argparse._SubParsersAction[_Parser], name: str) -> _Parser:
    from marketcov_dagster.cli_help import SUBCOMMANDS, description

    return sub.add_parser(
        name,
        help=SUBCOMMANDS[name][0],
        description=description(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="marketcov", description="Complete, verified, fresh OHLCV bars.")
    p.add_argument("--config", help="universe YAML (default: $MARKETCOV_CONFIG or ./marketcov.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def filters(sp: argparse.ArgumentParser, intervals_help: str = "comma-separated intervals (1d,1m)") -> None:
        sp.add_argument("--symbols", type=_csv_list, help="comma-separated symbols")
        sp.add_argument("--intervals", type=_csv_list, help=intervals_help)
        sp.add_argument("--asset-class", type=_csv_list, dest="asset_classes", help="comma-separated asset classes")

    b = _sub(sub, "backfill")
    filters(b, intervals_help=f"comma-separated intervals ({', '.join(INTERVALS)}; default: every one configured)")
    b.add_argument(
        "--start",
        help="first session, YYYY-MM-DD. Default, per interval: 1d and 1w the latest 3 closed sessions reaching "
        "back to the start of the newest ended week; 1m the latest 3 closed sessions and the one trading now; "
        "5m, 15m, 30m and 1h follow 1m. With --missing: the window's first session (the full history)",
    )
    b.add_argument("--end", help="last session, YYYY-MM-DD (default: the latest opened session)")
    b.add_argument(
        "--indicators",
        action="store_true",
        help="also the indicator assets of the selected symbols and intervals (after their bars)",
    )
    b.add_argument(
        "--missing",
        action="store_true",
        help="only the sessions coverage shows missing, partial or lost (in the window, or in --start..--end); "
        "nothing is fetched when nothing is missing",
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
    r.add_argument("--limit", type=_limit, help=f"only the latest N entries (at most {MAX_LIMIT:,})")
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
    bs.add_argument(
        "--adjust",
        choices=("none", "split", "all"),
        default="none",
        help="none: raw bars as traded (default); split: back-adjusted for splits; all: for splits and cash "
        "dividends. Adds price_factor and volume_factor; JSON becomes an object naming the basis and actions",
    )
    bs.add_argument("--as-of", dest="as_of", help="the session whose price basis adjusted bars are in (default: --end)")

    ac = _sub(sub, "actions")
    ac.add_argument("symbol", help="one symbol of the universe, e.g. NVDA")
    ac.add_argument("--format", choices=("table", "csv", "json"), default="table")

    rv = _sub(sub, "revisions")
    rv.add_argument(
        "decision",
        nargs="?",
        choices=("accept", "reject"),
        help="decide a held revision (on_revision: hold) of --asset and --partition; without it, list revisions",
    )
    rv.add_argument("--asset", help="with accept/reject: the asset key, e.g. ohlcv/1d/AAPL")
    rv.add_argument("--partition", help="with accept/reject: the partition (session), YYYY-MM-DD")
    filters(rv)
    rv.add_argument("--since", help="revisions recorded on or after this day, YYYY-MM-DD (UTC)")
    rv.add_argument("--limit", type=_limit, help=f"only the latest N (at most {MAX_LIMIT:,})")
    rv.add_argument("--format", choices=("table", "csv", "json"), default="table")

    vf = _sub(sub, "verify")
    filters(vf)
    vf.add_argument("--format", choices=("table", "json"), default="table")
    for name in ("backup", "restore"):
        _sub(sub, name).add_argument("path", help="the backup file (its manifest is PATH.manifest.json)")

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


from marketcov_dagster.lib.intervals import INTERVALS  # noqa: E402  (leaf modules: --help stays fast)
from marketcov_dagster.lib.kinds import REMEDIATION_KINDS  # noqa: E402


def _warehouse_commands(
    args: argparse.Namespace, symbols: list[str] | None, specs: list[AssetSpecification], sla: SlaSettings
) -> int:
    """``status``, ``vendors`` and ``remediation`` read the warehouse (``status`` also the instance's pools)."""

    from marketcov_dagster.lib.jsonout import dumps
    from marketcov_dagster.lib.warehouse import existing_or_empty
    from marketcov_dagster.lib.windows import BadRangeError, parse_day

    if args.command == "remediation":  # refuse bad filters before touching the warehouse
        since = parse_day(args.since, "--since") if args.since is not None else None
        session = parse_day(args.session, "--session").isoformat() if args.session is not None else None
        unknown = sorted(set(args.kinds or ()) - set(REMEDIATION_KINDS))
        if unknown:
            raise BadRangeError(f"--kind: unknown kind(s) {unknown}; known: {list(REMEDIATION_KINDS)}")
        from marketcov_dagster.lib.universe import KNOWN_VENDORS

        unknown = sorted(set(args.vendors or ()) - set(KNOWN_VENDORS))
        if unknown:
            raise BadRangeError(f"--vendor: unknown vendor(s) {unknown}; known: {list(KNOWN_VENDORS)}")
    wh = existing_or_empty()  # read-only: never creates the warehouse
    if args.command == "status":
        from marketcov_dagster.defs.history import coverage_for
        from marketcov_dagster.defs.pools import pool_states
        from marketcov_dagster.lib import pools
        from marketcov_dagster.lib.status import status_report, to_text
        from marketcov_dagster.lib.summary import headline, summarize, summary_rows

        now = datetime.now(UTC)
        report = status_report(wh, specs, now)
        with _instance() as instance:  # coverage (for gaps), and who holds each vendor's pool
            coverage = {c.asset_key: c for c in coverage_for(instance, specs, now, wh)}
            states = pool_states(instance)
        # the same states, counts and SLA verdicts as the status API and page
        by_key = {r["asset_key"]: r for r in summary_rows(specs, coverage, report, {}, "")}
        for a in report["assets"]:
            a.update({k: by_key[a["asset_key"]][k] for k in ("kind", "gap_sessions", "gapped", "state")})
        summary = summarize(list(by_key.values()), coverage, sla, report["checked_at"])
        report.update({k: summary[k] for k in ("gapped", "sla", "sla_ok")}, headline=headline(summary))
        report["pools"] = pools.statuses_json(states)
        print(dumps(report) if args.format == "json" else "\n".join([to_text(report), *pools.to_text(states)]))
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
            from marketcov_dagster.lib.texttable import render

            cols = ["vendor", "state", "since", "last_ok_at", "last_failure_at", "calls", "failures", "rate_limited"]
            cols += ["blocked_until", "detail"]
            print(render(cols, [[row.get(c) for c in cols] for row in statuses]))
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
        from marketcov_dagster.lib.texttable import render

        shown = df.drop(columns=["id"])
        cells = [[None if v != v else v for v in r] for r in shown.itertuples(index=False)]  # NaN: none
        print(render(list(shown.columns), cells))
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
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush at exit must not fail again
        return 141
    except Exception as e:  # SQLite finding damage the quick check did not reach: one line, not a traceback
        damage = _damage_found(e)
        if damage is None:
            raise
        print(f"marketcov: {damage}", file=sys.stderr)
        return 2


def _damage_found(e: BaseException) -> str | None:
    import sqlalchemy as sa

    from marketcov_dagster.lib.warehouse import default_warehouse_url, sqlite_path
    from marketcov_dagster.lib.warehouse.integrity import fix_hint

    text = str(getattr(e, "orig", e))
    if not isinstance(e, sa.exc.DatabaseError) or not ("malformed" in text or "not a database" in text):
        return None
    path = sqlite_path(default_warehouse_url())
    where = f"warehouse {path}" if path else "the warehouse"
    return f"{where} is damaged ({text.splitlines()[0]}); {fix_hint(path) if path else 'restore it from a backup'}"


def _check_warehouse() -> None:
    """SQLite's quick check of an embedded warehouse before a command reads or writes it."""
    from marketcov_dagster.lib.warehouse import WarehouseDamaged, default_warehouse_url, sqlite_path
    from marketcov_dagster.lib.warehouse.integrity import damage

    path = sqlite_path(default_warehouse_url())
    problem = damage(path) if path else None
    if problem:
        raise WarehouseDamaged(problem)


def _run(args: argparse.Namespace) -> int:
    from marketcov_dagster.lib.universe import ConfigError, load_universe
    from marketcov_dagster.lib.windows import parse_day

    universe = load_universe(args.config)
    if args.command == "ui":
        return _ui(args)
    if args.command == "serve":
        from marketcov_dagster.cli_serve import api_token, serve

        _resolvable(args.host)
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
        as_of = parse_day(args.as_of, "--as-of") if args.as_of is not None else None
        if as_of is not None and args.adjust == "none":
            raise ConfigError("--as-of names the basis of adjusted bars: give --adjust split or --adjust all")
        if args.indicators and args.interval not in universe.config.indicators.intervals:
            raise ConfigError(
                f"--indicators: the universe computes indicators for {universe.config.indicators.intervals or 'no'} "
                f"interval(s), not {args.interval} (add it under indicators: intervals:)"
            )
        _ensure_dagster_home()  # after every check of the input: a refused command creates nothing
        _check_warehouse()
        return export_bars(spec[0], start, end, args.format, args.output, args.indicators, args.adjust, as_of)
    if args.command == "actions":
        from marketcov_dagster.cli_prices import show_actions

        chosen = universe.select([args.symbol])[0]  # an unknown symbol: one line
        _ensure_dagster_home()
        _check_warehouse()
        return show_actions(chosen, args.format)
    if args.command == "revisions" and (args.decision or args.asset or args.partition):
        from marketcov_dagster.cli_prices import decide_revision

        if not (args.decision and args.asset and args.partition):
            raise ConfigError("revisions accept|reject needs --asset KEY and --partition YYYY-MM-DD, all three")
        day = parse_day(args.partition, "--partition")
        named = [s for s in universe.specs if s.key_str == args.asset]
        if not named:
            raise ConfigError(f"--asset {args.asset!r}: not an OHLCV asset of the universe (e.g. ohlcv/1d/AAPL)")
        _ensure_dagster_home()
        _check_warehouse()
        return decide_revision(named[0], day, args.decision)
    if args.command == "revisions":
        from marketcov_dagster.cli_prices import show_revisions

        since = parse_day(args.since, "--since") if args.since is not None else None
        chosen_specs = universe.select(args.symbols, args.intervals, args.asset_classes)
        _ensure_dagster_home()
        _check_warehouse()
        return show_revisions(chosen_specs, since, args.limit, args.format)
    if args.command in ("verify", "backup", "restore"):
        from marketcov_dagster.cli_maintenance import maintenance

        specs = universe.select(
            getattr(args, "symbols", None), getattr(args, "intervals", None), getattr(args, "asset_classes", None)
        )
        _ensure_dagster_home()
        return maintenance(args, specs)
    selecting = args.command != "vendors"
    specs = universe.select(args.symbols, args.intervals, args.asset_classes) if selecting else []
    if args.command == "coverage" and args.indicators:
        specs = [*specs, *_indicators_of(universe, specs)]
    if args.command == "status":  # every asset, as the status API and page count them
        specs = [*specs, *universe.indicators_of(specs)]
        if args.indicators:
            _indicators_of(universe, specs)  # asked for: none configured is an error, as before
    start = parse_day(args.start, "--start") if getattr(args, "start", None) is not None else None
    end = parse_day(args.end, "--end") if getattr(args, "end", None) is not None else None
    _ensure_dagster_home()
    _check_warehouse()
    if args.command in ("status", "vendors", "remediation"):
        symbols = args.symbols if args.command == "remediation" else None
        return _warehouse_commands(args, symbols, specs, universe.config.sla)
    if args.command == "backfill":
        return _backfill(args, universe, specs, start, end)
    return _coverage(args, specs)


def _resolvable(host: str) -> None:
    import socket

    from marketcov_dagster.lib.universe import ConfigError

    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        raise ConfigError(f"--host {host!r} is not an address or a name this machine can resolve ({e})") from None


def _ui(args: argparse.Namespace) -> int:
    from marketcov_dagster.cli_ui import run_ui
    from marketcov_dagster.lib.universe import config_path

    _resolvable(args.host)  # before anything is written into the home
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
    it are marked failed first, and finished runs' pool slots freed, so nothing stays jammed."""
    import dagster as dg

    from marketcov_dagster.defs.orphans import clean_up
    from marketcov_dagster.lib.universe import ConfigError

    with _instance_lock():
        try:
            instance = dg.DagsterInstance.get()
        except dg.DagsterError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"the Dagster instance in {os.environ['DAGSTER_HOME']} cannot start: {first}") from None
    with instance:
        for line in clean_up(instance).lines():
            print(f"marketcov: note: {line}", file=sys.stderr)
        yield instance


def _backfill(
    args: argparse.Namespace, universe: Universe, specs: list[AssetSpecification], start: date | None, end: date | None
) -> int:
    from functools import partial

    from marketcov_dagster.defs.backfill import plan_backfill
    from marketcov_dagster.defs.build import build_definitions
    from marketcov_dagster.defs.history import coverage_for
    from marketcov_dagster.lib import coverage as cov
    from marketcov_dagster.lib.warehouse import Warehouse

    now = datetime.now(UTC)
    indicators = _indicators_of(universe, specs) if args.indicators else []
    plans = (
        []
        if args.missing
        else plan_backfill(specs, start, end, now, universe.config.indicators.intervals if args.indicators else ())
    )
    for p in plans:
        if p.skipped:
            print(f"marketcov: note: {p.job_name} skipped: {p.skipped}", file=sys.stderr)
    Warehouse().dispose()  # a bad URL or a database that is down: one line, before any run
    with _instance() as instance:
        if args.missing:
            plans = _missing_plans(instance, [*specs, *indicators], start, end)
        if not plans:
            print("marketcov: note: nothing is missing: every session of the selection is stored", file=sys.stderr)
            runs = []
        else:
            runs = _run_unclaimed(args, instance, plans, partial(build_definitions, universe, now), specs)
        print()
        print(cov.to_table(coverage_for(instance, [*specs, *indicators])))
    return 0 if all(r.success for r in runs) else 1


def _missing_plans(
    instance: DagsterInstance, specs: list[AssetSpecification], start: date | None, end: date | None
) -> list[GroupPlan]:
    """``--missing``: only what coverage shows missing, partial or lost (written, then gone)."""
    from marketcov_dagster.defs.backfill import plan_missing
    from marketcov_dagster.defs.history import coverage_for
    from marketcov_dagster.lib.warehouse import existing_or_empty

    wh = existing_or_empty()
    try:
        return plan_missing(specs, coverage_for(instance, specs, warehouse=wh), start, end)
    finally:
        wh.dispose()


def _run_unclaimed(
    args: argparse.Namespace,
    instance: DagsterInstance,
    plans: list[GroupPlan],
    make_defs: Callable[[], Definitions],
    specs: list[AssetSpecification],
) -> list[GroupRun]:
    """Run the plans less the partitions another backfill or run is materializing now (said in
    one line), holding a claim on them so that a backfill started after this one skips them too."""
    from marketcov_dagster.defs.backfill import inflight_partitions, partitions_by_asset, without_taken
    from marketcov_dagster.lib.claims import ClaimBook

    book = ClaimBook(Path(os.environ["DAGSTER_HOME"]))
    with book.locked():
        taken = book.taken()
        for key, sessions in inflight_partitions(instance, specs).items():
            taken.setdefault(key, set()).update(sessions)
        plans, skipped = without_taken(plans, taken)
        claim = book.add(partitions_by_asset(plans))
    if skipped:
        print(
            f"marketcov: note: skipped {skipped} partition(s) that another backfill or run is materializing now",
            file=sys.stderr,
        )
    try:
        return _run_backfill(args, instance, plans, make_defs) if plans else []
    finally:
        book.remove(claim)


def _run_backfill(
    args: argparse.Namespace,
    instance: DagsterInstance,
    plans: list[GroupPlan],
    make_defs: Callable[[], Definitions],
) -> list[GroupRun]:
    """Run the plans on ``instance`` (each run's line printed), saying when a run waits for a slot."""
    import uuid

    from marketcov_dagster.defs.backfill import BACKFILL_TAG, auto_workers, instance_hint, run_backfill
    from marketcov_dagster.defs.orphans import fail_orphaned_runs
    from marketcov_dagster.defs.pools import WaitWatcher

    n_assets = sum(len(p.specs) for p in plans if p.sessions)
    workers = min(args.workers or auto_workers(plans), max(1, n_assets))
    if args.workers and args.workers > workers:
        print(f"marketcov: note: --workers {args.workers} capped at {workers}, one per asset", file=sys.stderr)
    hint = instance_hint(instance, plans)
    if hint:
        print(f"marketcov: note: {hint}", file=sys.stderr)
    tags = {BACKFILL_TAG: str(uuid.uuid4())}
    watcher = WaitWatcher(instance.get_ref(), tags, lambda line: print(f"marketcov: {line}", file=sys.stderr))
    watcher.start()  # a run waiting for a vendor's pool slot says so, and who holds it
    try:
        _refresh_ledger(instance, plans, make_defs, tags)
        runs = run_backfill(make_defs, instance, plans, workers, tags=tags)
    except KeyboardInterrupt:
        fail_orphaned_runs(instance)  # the runs of the workers just stopped
        raise
    finally:
        watcher.stop()
    for r in runs:
        state = "ok" if r.success else f"FAILED: {r.error}"
        print(
            f"{r.job_name}: {r.assets} asset(s) x {r.sessions} session(s) "
            f"{r.first_session}..{r.last_session} run {r.run_id[:8]} {state}"
        )
    _print_revisions([r.run_id for r in runs])
    return runs


def _print_revisions(run_ids: list[str]) -> None:
    """One line per partition the backfill's runs revised (stored bars the vendor changed)."""
    from marketcov_dagster.lib.warehouse import Warehouse

    if not run_ids:
        return
    wh = Warehouse()
    try:
        for rev in reversed(wh.revisions(run_ids=run_ids)):
            print(rev.describe())
    finally:
        wh.dispose()


def _refresh_ledger(
    instance: DagsterInstance, plans: list[GroupPlan], make_defs: Callable[[], Definitions], tags: dict[str, str]
) -> None:
    """The corporate-actions ledger of the backfill's months first: checks and indicators read it."""
    from marketcov_dagster.defs.actions import refresh_for_backfill
    from marketcov_dagster.defs.backfill import failure_cause
    from marketcov_dagster.lib.calendars import get_calendar

    days = [d for p in plans if not get_calendar(p.specs[0].calendar).always_open for d in p.sessions]
    if not days:
        return
    result = refresh_for_backfill(make_defs(), instance, days, tags)
    if result is None:
        return
    if not result.success:
        print(f"marketcov: corporate actions not refreshed: {failure_cause(result.all_events)}", file=sys.stderr)
        return
    counts: dict[str, int] = {}
    seen = set()
    for m in result.get_asset_materialization_events():  # a range run: one per month, same figures
        if m.asset_key in seen:
            continue
        seen.add(m.asset_key)
        for k in ("added", "changed", "withdrawn"):
            value = m.materialization.metadata.get(k)
            counts[k] = counts.get(k, 0) + int(getattr(value, "value", 0) or 0)
    print(
        f"corporate_actions_job: {min(days)}..{max(days)} ("
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f") run {result.run_id[:8]} ok"
    )


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

    from marketcov_dagster.lib.warehouse import existing_or_empty

    wh = existing_or_empty()  # reconciled with it: a partition whose bars are gone is lost, not covered
    try:
        with _instance() as instance:
            assets = coverage_for(instance, specs, warehouse=wh)
    finally:
        wh.dispose()
    if args.format == "json":
        print(dumps(cov.report(assets, datetime.now(UTC))))
    elif args.format == "csv":
        sys.stdout.write(cov.to_csv(assets, args.view))
    else:
        print(cov.to_table(assets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
