"""The coverage report: a markdown table, a heatmap picture (assets x days), HTML and CSV.

Cell colours: complete, partial, missing, not a session (weekend, holiday), outside the window.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.coverage import AssetCoverage, to_csv
from marketcov_dagster.lib.freshness import Freshness

COMPLETE, PARTIAL, MISSING, CLOSED, OUTSIDE = "complete", "partial", "missing", "not a session", "outside window"
COLOURS: dict[str, tuple[int, int, int]] = {
    COMPLETE: (46, 160, 67),
    PARTIAL: (240, 180, 41),
    MISSING: (214, 54, 56),
    CLOSED: (222, 226, 230),
    OUTSIDE: (255, 255, 255),
}
DEFAULT_DAYS = 60


@dataclass(frozen=True)
class Heatmap:
    days: list[date]
    rows: list[tuple[str, list[str]]]  # (asset key, one state per day)


def heatmap(assets: Sequence[AssetCoverage], today: date, days: int = DEFAULT_DAYS) -> Heatmap:
    """Each asset's state on each of the last ``days`` calendar days (exchange dates)."""
    span = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    rows = []
    for a in assets:
        cal = get_calendar(a.calendar)
        missing, partial = set(a.missing), set(a.partial)
        expected_from = a.first_expected
        states = []
        for d in span:
            key = d.isoformat()
            if not cal.is_session(d):
                states.append(CLOSED)
            elif expected_from is None or key < expected_from or key > (a.last_expected or ""):
                states.append(OUTSIDE)
            elif key in missing:
                states.append(MISSING)
            elif key in partial:
                states.append(PARTIAL)
            else:
                states.append(COMPLETE)
        rows.append((a.asset_key, states))
    return Heatmap(span, rows)


def heatmap_png(hm: Heatmap, cell: int = 16) -> bytes:
    """The heatmap as a PNG: one row per asset, one column per day, labels on the left and top."""
    font = ImageFont.load_default(size=cell - 3)
    char_w = cell * 0.6
    label_w = int(10 + char_w * max((len(k) for k, _ in hm.rows), default=10))
    top, legend_h = 2 * cell + 8, cell + 12
    width = max(label_w + cell * len(hm.days) + 10, int(char_w * 90))
    height = top + cell * len(hm.rows) + legend_h + 10
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for j, d in enumerate(hm.days):
        if d.weekday() == 0:  # Mondays, on two staggered lines so labels never overlap
            y = 4 if (j // 7) % 2 == 0 else cell + 4
            draw.text((label_w + j * cell, y), d.strftime("%m-%d"), fill=(60, 60, 60), font=font)
    for i, (key, states) in enumerate(hm.rows):
        y = top + i * cell
        draw.text((4, y + 1), key, fill=(20, 20, 20), font=font)
        for j, state in enumerate(states):
            x = label_w + j * cell
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=COLOURS[state], outline=(200, 200, 200))
    x, y = 4, top + cell * len(hm.rows) + 10
    for state, colour in COLOURS.items():
        draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=colour, outline=(150, 150, 150))
        draw.text((x + cell + 3, y + 1), state, fill=(20, 20, 20), font=font)
        x += int(cell + 16 + char_w * len(state))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def markdown_table(assets: Sequence[AssetCoverage], lags: Mapping[str, Freshness]) -> str:
    lines = [
        "| asset | coverage % | covered | segments | missing | partial | expired | last session | lag |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for a in assets:
        f = lags.get(a.asset_key)
        lag = "-" if f is None else f"{f.describe_lag()}{' STALE' if f.stale else ''}"
        lines.append(
            f"| `{a.asset_key}` | {a.coverage_pct:.2f} | {a.covered_sessions}/{a.expected_sessions} | "
            f"{len(a.segments)} | {len(a.missing)} | {len(a.partial)} | {a.expired_sessions} | "
            f"{a.last_session or '-'} | {lag} |"
        )
    return "\n".join(lines)


CROSS_CHECK_KINDS = ("vendor_divergence", "revised", "interval_mismatch", "source_mismatch")


def findings_table(entries: Sequence[Mapping[Any, Any]]) -> str:
    """Cross-checks' findings (reconciliation and daily vs minutes) per asset and kind: count,
    latest session and what it said. ``entries`` oldest first, as the remediation log lists them."""
    latest: dict[tuple[str, str, str], tuple[int, Mapping[Any, Any]]] = {}
    for e in entries:
        k = (str(e["symbol"]), str(e["interval"]), str(e["kind"]))
        latest[k] = (latest.get(k, (0, e))[0] + 1, e)
    if not latest:
        return "No vendor divergence, revision or daily/minute mismatch logged."
    lines = ["| asset | finding | count | latest session | detail |", "|---|---|---:|---|---|"]
    for (symbol, interval, kind), (n, e) in sorted(latest.items()):
        detail = str(e["detail"]).replace("|", "/")[:160]
        lines.append(f"| {symbol} {interval} | {kind} | {n} | {e.get('session') or '-'} | {detail} |")
    return "\n".join(lines)


def to_html(assets: Sequence[AssetCoverage], lags: Mapping[str, Freshness], png: bytes, generated_at: datetime) -> str:
    rows = []
    for a in assets:
        f = lags.get(a.asset_key)
        lag = "-" if f is None else html.escape(f.describe_lag() + (" STALE" if f.stale else ""))
        rows.append(
            f"<tr><td><code>{html.escape(a.asset_key)}</code></td><td>{a.coverage_pct:.2f}</td>"
            f"<td>{a.covered_sessions}/{a.expected_sessions}</td><td>{len(a.segments)}</td>"
            f"<td title='{html.escape(' '.join(a.missing[:200]))}'>{len(a.missing)}</td>"
            f"<td title='{html.escape(' '.join(a.partial[:200]))}'>{len(a.partial)}</td>"
            f"<td>{a.expired_sessions}</td><td>{a.last_session or '-'}</td><td>{lag}</td></tr>"
        )
    image = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>marketcov coverage</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>marketcov coverage</h1><p>Generated {html.escape(generated_at.isoformat())}</p>
<table><tr><th>asset</th><th>coverage %</th><th>covered</th><th>segments</th><th>missing</th><th>partial</th>
<th>expired</th><th>last session</th><th>lag</th></tr>
{"".join(rows)}
</table>
<h2>Last {DEFAULT_DAYS} days</h2><img alt="coverage heatmap" src="data:image/png;base64,{image}">
</body></html>
"""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path
    png: Path


def write_report(
    folder: Path, assets: Sequence[AssetCoverage], lags: Mapping[str, Freshness], png: bytes, generated_at: datetime
) -> ReportFiles:
    """Write ``coverage.html``, ``coverage.csv`` and ``coverage_heatmap.png``, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / "coverage.html", folder / "coverage.csv", folder / "coverage_heatmap.png")
    for path, data in (
        (files.html, to_html(assets, lags, png, generated_at).encode()),
        (files.csv, to_csv(assets).encode()),
        (files.png, png),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return files
