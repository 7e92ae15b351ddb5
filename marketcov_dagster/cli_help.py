"""What each ``marketcov`` subcommand's ``--help`` says first: what it does, where it reads from,
and the examples a user needs most."""

from __future__ import annotations

import textwrap

SUBCOMMANDS: dict[str, tuple[str, str, list[str]]] = {
    # name: (one-line summary, what it does and reads, examples)
    "backfill": (
        "materialize a session range through Dagster, then show coverage",
        "Fetches bars for a session range from the vendor chain and writes them to the warehouse, as "
        "Dagster range runs on the instance in $DAGSTER_HOME (visible in the UI); reads the universe "
        "config. With no dates: the latest 3 closed sessions, and for 1m also the one trading now; with "
        "--missing, only what coverage shows missing, partial or lost, over the whole window unless dated.",
        [
            "marketcov backfill",
            "marketcov backfill --symbols BTCUSDT --intervals 1m",
            "marketcov backfill --symbols AAPL,MSFT --intervals 1d --start 2025-01-01 --end 2025-06-30",
            "marketcov backfill --start 2000-01-01 --workers 2",
            "marketcov backfill --missing --indicators",
        ],
    ),
    "coverage": (
        "coverage per asset from Dagster's materialization history",
        "Shows, per asset, which sessions of its window are present and complete: coverage %, segments, "
        "missing and partial sessions. Reads the Dagster instance in $DAGSTER_HOME (materialization "
        "history) and the universe config; writes nothing but its cache.",
        [
            "marketcov coverage",
            "marketcov coverage --intervals 1m --format json",
            "marketcov coverage --format csv --view sessions > holes.csv",
            "marketcov coverage --intervals 1d --indicators",
        ],
    ),
    "status": (
        "freshness per asset, open incidents, recent alerts and vendor health",
        "Shows how far each asset's newest bar trails the calendar (stale above its threshold), open "
        "incidents, alert emails and vendor health. Reads the warehouse and the universe config.",
        ["marketcov status", "marketcov status --intervals 1m --format json", "marketcov status --indicators"],
    ),
    "vendors": (
        "each vendor's health from its most recent real calls",
        "Shows each vendor's state, call and failure counts and any rate-limit block still in force. "
        "Reads the warehouse.",
        ["marketcov vendors", "marketcov vendors --format json"],
    ),
    "remediation": (
        "list or export the remediation log",
        "Lists what the pipeline found and did about it: gaps, invalid or out-of-session bars, vendor "
        "errors and fallbacks, checksum mismatches. Reads the warehouse.",
        [
            "marketcov remediation --limit 20",
            "marketcov remediation --kind gap,vendor_error --since 2026-11-01 --format csv > remediation.csv",
        ],
    ),
    "bars": (
        "stored bars of one asset for a session range, as CSV, JSON or Parquet",
        "Streams the bars of one symbol and interval for a session range out of the warehouse (JSON: "
        "an array of objects with ts in ISO 8601 UTC, open, high, low, close, volume). Reads the "
        "warehouse and the universe config; with no dates, the asset's whole window.",
        [
            "marketcov bars AAPL --interval 1m --start 2026-11-02 --end 2026-11-06 > aapl.csv",
            "marketcov bars BTCUSDT --interval 1d --format json",
            "marketcov bars SPY --interval 1m --format parquet --output spy.parquet",
            "marketcov bars NVDA --start 2024-06-03 --end 2024-06-14 --adjust all --format json",
        ],
    ),
    "actions": (
        "a symbol's corporate actions and the adjustment factors in force over each session range",
        "Lists the splits and cash dividends of one symbol in the ledger (each vendor's statement, when "
        "first seen and last changed, withdrawn ones kept and marked) and the cumulative split and dividend "
        "factors a bar of each session range is multiplied by to reach the latest session's prices. Reads "
        "the warehouse and the universe config.",
        ["marketcov actions NVDA", "marketcov actions AAPL --format json", "marketcov actions JPM --format csv"],
    ),
    "revisions": (
        "stored partitions whose bars a re-fetch changed",
        "Lists each revision: a re-fetch that changed, removed or inserted bars of a stored partition, with "
        "the old and new checksum, the bars added, removed and changed and the largest relative price change. "
        "A live session growing at its end is not a revision. Reads the warehouse.",
        ["marketcov revisions", "marketcov revisions --since 2026-12-01 --format json"],
    ),
    "verify": (
        "check the whole warehouse: SQLite's integrity and every partition's checksum",
        "Runs SQLite's full integrity check on an embedded warehouse, then re-reads every written "
        "partition of the selected assets and compares its bars with the checksum recorded when it was "
        "written. Exit 0 when everything matches, 1 with one line per damaged or lost partition. Reads "
        "the warehouse and the universe config; writes nothing.",
        ["marketcov verify", "marketcov verify --symbols AAPL --intervals 1d --format json"],
    ),
    "backup": (
        "a consistent online copy of the embedded warehouse, with a checksum manifest",
        "Copies the SQLite warehouse with SQLite's backup API (backfills may keep writing), checks the "
        "copy (integrity and every partition's checksum) and writes PATH.manifest.json beside it. A copy "
        "that fails is not kept. Reads the warehouse and the universe config. PostgreSQL warehouses: "
        "see docs/production.md.",
        ["marketcov backup /backups/marketcov-2026-12-07.sqlite"],
    ),
    "restore": (
        "replace the embedded warehouse with a backup, once every checksum is proven",
        "Checks the backup's integrity and every partition checksum of its manifest before anything is "
        "replaced; the replaced file is kept beside the warehouse as <name>.replaced-<time>. Stop "
        "marketcov serve, ui and any backfill first. Reads the backup, its manifest and the universe config.",
        ["marketcov restore /backups/marketcov-2026-12-07.sqlite"],
    ),
    "ui": (
        "the Dagster UI and daemon on the same instance as the CLI",
        "Starts the Dagster webserver and daemon (schedules, sensors, run queue, alert emails). Reads the "
        "instance the CLI uses ($DAGSTER_HOME, else ~/.local/share/marketcov) and the same universe config. "
        "Ctrl-C stops both.",
        ["marketcov ui", "marketcov ui --port 3001 --no-daemon"],
    ),
    "serve": (
        "the read-only status API and status page over HTTP",
        "Serves status, coverage and range readiness, lineage, run reports, ops, Prometheus metrics and "
        "an HTML status page. Reads the instance in $DAGSTER_HOME, the warehouse and the universe "
        "config. Binding beyond loopback requires $MARKETCOV_API_TOKEN.",
        [
            "marketcov serve",
            "marketcov serve --port 8001",
            "marketcov serve --host 0.0.0.0 --port 8000",
        ],
    ),
}


def description(name: str) -> str:
    _summary, what, examples = SUBCOMMANDS[name]
    lines = [textwrap.fill(what, 88), "", "examples:", *(f"  {e}" for e in examples)]
    return "\n".join(lines)
