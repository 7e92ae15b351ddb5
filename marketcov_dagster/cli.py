"""The ``marketcov`` command: backfill through Dagster, report coverage, freshness status, vendor
health and the remediation log.

Imports are lazy so ``marketcov --help`` and argument errors answer fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from marketcov_dagster.lib.universe import AssetSpecification


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="marketcov", description="Complete, verified, fresh OHLCV bars.")
    p.add_argument("--config", help="universe YAML (default: $MARKETCOV_CONFIG or ./marketcov.yaml)")
    sub = p.add_subparsers(dest="command", required=True)

    def filters(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--symbols", type=_csv_list, help="comma-separated symbols")
        sp.add_argument("--intervals", type=_csv_list, help="comma-separated intervals (1d,1m)")
        sp.add_argument("--asset-class", type=_csv_list, dest="asset_classes", help="comma-separated asset classes")

    b = sub.add_parser("backfill", help="materialize a session range through Dagster, then show coverage")
    filters(b)
    b.add_argument("--start", help="first session, YYYY-MM-DD (default: the latest 3 closed sessions)")
    b.add_argument("--end", help="last session, YYYY-MM-DD (default: the latest opened session)")
    b.add_argument(
        "--workers",
        type=_positive_int,
        help="processes running the runs side by side (default: one per core, at most 4, "
        "and at most one per 500 partitions)",
    )

    c = sub.add_parser("coverage", help="coverage per asset from Dagster's materialization history")
    filters(c)
    c.add_argument("--format", choices=("table", "json", "csv"), default="table")

    v = sub.add_parser("vendors", help="each vendor's health from its most recent real calls")
    v.add_argument("--format", choices=("table", "json"), default="table")

    st = sub.add_parser("status", help="freshness per asset, open incidents, recent alerts and vendor health")
    filters(st)
    st.add_argument("--format", choices=("table", "json"), default="table")

    r = sub.add_parser("remediation", help="list or export the remediation log")
    filters(r)
    r.add_argument(
        "--kind", type=_csv_list, dest="kinds", help=f"comma-separated kinds: {', '.join(REMEDIATION_KINDS)}"
    )
    r.add_argument("--vendor", type=_csv_list, dest="vendors", help="comma-separated vendors")
    r.add_argument("--session", help="one session, YYYY-MM-DD")
    r.add_argument("--since", help="entries logged on or after this day, YYYY-MM-DD (UTC)")
    r.add_argument("--limit", type=int, help="only the latest N entries")
    r.add_argument("--format", choices=("table", "json", "csv"), default="table")
    return p


REMEDIATION_KINDS = ("gap", "invalid_bars", "vendor_error", "vendor_fallback", "checksum_mismatch")


def _warehouse_commands(args: argparse.Namespace, symbols: list[str] | None, specs: list[AssetSpecification]) -> int:
    """``status``, ``vendors`` and ``remediation`` read only the warehouse: no Dagster instance needed."""
    import pandas as pd

    from marketcov_dagster.lib.warehouse import Warehouse
    from marketcov_dagster.lib.windows import BadRangeError, parse_day

    if args.command == "remediation":  # refuse bad filters before touching the warehouse
        since = parse_day(args.since, "--since") if args.since else None
        session = parse_day(args.session, "--session").isoformat() if args.session else None
        unknown = sorted(set(args.kinds or ()) - set(REMEDIATION_KINDS))
        if unknown:
            raise BadRangeError(f"--kind: unknown kind(s) {unknown}; known: {list(REMEDIATION_KINDS)}")
        if args.limit is not None and args.limit <= 0:
            raise BadRangeError("--limit must be a positive number")
    wh = Warehouse()
    if args.command == "status":
        from marketcov_dagster.lib.status import status_report, to_text

        report = status_report(wh, specs, datetime.now(UTC))
        print(json.dumps(report, indent=2) if args.format == "json" else to_text(report))
        return 0
    if args.command == "vendors":
        statuses = wh.vendor_statuses()
        for row in statuses:
            until, reason = wh.vendor_block(row["vendor"])
            row["blocked_until"] = datetime.fromtimestamp(until, UTC).isoformat() if until > 0 else None
            row["blocked_reason"] = reason or None
        if args.format == "json":
            print(json.dumps(statuses, indent=2, default=str))
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
        print(json.dumps(df.to_dict("records"), indent=2, default=str))
    elif args.format == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif df.empty:
        print("no remediation entries match")
    else:
        print(df.drop(columns=["id"]).to_string(index=False, max_colwidth=90))
    return 0


def _ensure_dagster_home() -> None:
    if os.environ.get("DAGSTER_HOME"):
        return
    if Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
        print(f"DAGSTER_HOME not set; using {Path.cwd()}", file=sys.stderr)
        return
    raise SystemExit("marketcov: set DAGSTER_HOME (the folder holding dagster.yaml) or run from the project root")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from marketcov_dagster.lib.universe import ConfigError, load_universe
    from marketcov_dagster.lib.windows import BadRangeError, parse_day

    try:
        universe = load_universe(args.config)
        selecting = args.command != "vendors"
        specs = universe.select(args.symbols, args.intervals, args.asset_classes) if selecting else []
        start = parse_day(args.start, "--start") if getattr(args, "start", None) else None
        end = parse_day(args.end, "--end") if getattr(args, "end", None) else None
        _ensure_dagster_home()
        if args.command in ("status", "vendors", "remediation"):
            return _warehouse_commands(args, args.symbols if args.command == "remediation" else None, specs)
    except (ConfigError, BadRangeError) as e:
        print(f"marketcov: {e}", file=sys.stderr)
        return 2

    import dagster as dg

    from marketcov_dagster.defs.history import coverage_for
    from marketcov_dagster.lib import coverage as cov

    with dg.DagsterInstance.get() as instance:
        if args.command == "backfill":
            from functools import partial

            from marketcov_dagster.defs.backfill import auto_workers, instance_hint, plan_backfill, run_backfill
            from marketcov_dagster.defs.build import build_definitions

            now = datetime.now(UTC)
            try:
                plans = plan_backfill(specs, start, end, now)
            except BadRangeError as e:
                print(f"marketcov: {e}", file=sys.stderr)
                return 2
            workers = args.workers or auto_workers(plans)
            hint = instance_hint(instance, plans)
            if hint:
                print(f"marketcov: note: {hint}", file=sys.stderr)
            runs = run_backfill(partial(build_definitions, universe, now), instance, plans, workers)
            for r in runs:
                state = "ok" if r.success else f"FAILED: {r.error}"
                print(
                    f"{r.job_name}: {r.assets} asset(s) x {r.sessions} session(s) "
                    f"{r.first_session}..{r.last_session} run {r.run_id[:8]} {state}"
                )
            print()
            print(cov.to_table(coverage_for(instance, specs)))
            return 0 if all(r.success for r in runs) else 1

        assets = coverage_for(instance, specs)
        if args.format == "json":
            print(json.dumps(cov.report(assets, datetime.now(UTC)), indent=2))
        elif args.format == "csv":
            sys.stdout.write(cov.to_csv(assets))
        else:
            print(cov.to_table(assets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
