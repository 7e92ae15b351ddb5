"""The status page at ``/``: server-rendered HTML, readable without JavaScript. The summary with
stale and gapped badges, filters (a plain GET form), CSV export, a coverage heatmap of recent
sessions, vendor health, open incidents and the SLA banner; each asset links to its partitions
view in the Dagster UI, where "backfill missing" is one click."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from marketcov_dagster.api.context import ApiContext
from marketcov_dagster.lib.calendars import get_calendar
from marketcov_dagster.lib.freshness import human_minutes
from marketcov_dagster.lib.summary import STATE_TEXT, headline
from marketcov_dagster.lib.windows import expected_sessions

HEATMAP_SESSIONS = 20
CELL = {
    "complete": ("c", "✓"),
    "partial": ("p", "½"),
    "missing": ("m", "✗"),
    "not loaded": ("n", "·"),  # before the asset's first stored session: history not loaded yet, not a gap
}

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a1a1a;background:#fff}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}
th{background:#f0f0f0}caption{text-align:left;font-weight:600;padding:.25rem 0}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600}
.ok{background:#dff3e4;color:#0b4d1c}.stale{background:#fde2e1;color:#7a1010}
.gapped{background:#fff1c2;color:#5c4500}.no_data{background:#e8e8e8;color:#333}
.banner{padding:.6rem 1rem;border-radius:.4rem;margin:.75rem 0;font-weight:600}
.banner.pass{background:#dff3e4;color:#0b4d1c}.banner.fail{background:#fde2e1;color:#7a1010}
form{display:flex;gap:.75rem;align-items:flex-end;flex-wrap:wrap;margin:.5rem 0}
label{display:flex;flex-direction:column;font-size:.85rem}
.heat td{text-align:center;padding:.1rem .3rem}.heat .c{background:#dff3e4;color:#0b4d1c}
.heat .p{background:#fff1c2;color:#5c4500}.heat .m{background:#fde2e1;color:#7a1010}
.heat .n{background:#f0f0f0;color:#555}
a{color:#0645ad}
"""


def _options(name: str, label: str, values: list[str], chosen: str | None) -> str:
    opts = [f'<option value=""{" selected" if not chosen else ""}>all</option>']
    opts += [f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>' for v in values]
    return f'<label for="f-{name}">{label}<select id="f-{name}" name="{name}">{"".join(opts)}</select></label>'


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th scope='col'>asset</th><th scope='col'>class</th><th scope='col'>state</th>"
        "<th scope='col'>coverage</th><th scope='col'>window</th><th scope='col'>last session</th>"
        "<th scope='col'>latest bar end</th><th scope='col'>lag</th><th scope='col'>incident</th>"
        "<th scope='col'>last vendor</th></tr>"
    )
    body = []
    for r in rows:
        state = r["state"]
        lag = "-" if r["lag_minutes"] is None else human_minutes(r["lag_minutes"])
        gaps = f" ({r['gap_sessions']} session(s) with a gap)" if r["gapped"] else ""
        body.append(
            "<tr>"
            f"<th scope='row'><a href=\"{escape(r['ui_url'])}\">{escape(r['asset_key'])}</a></th>"
            f"<td>{escape(r['asset_class'])}</td>"
            f"<td><span class='badge {state}'>{STATE_TEXT[state]}</span></td>"
            f"<td>{r['coverage_pct']:.2f}% ({r['covered_sessions']}/{r['expected_sessions']}){gaps}</td>"
            f"<td>{escape(str(r['window_first']))} .. {escape(str(r['window_last']))}</td>"
            f"<td>{escape(str(r['last_session'] or '-'))}</td>"
            f"<td>{escape(str(r['latest_bar_end'] or '-'))}</td>"
            f"<td>{lag}</td>"
            f"<td>{'#' + str(r['open_incident']) if r['open_incident'] else '-'}</td>"
            f"<td>{escape(r['last_vendor'] or '-')}</td>"
            "</tr>"
        )
    caption = f"<caption>Assets ({len(rows)})</caption>"
    return f"<table id='summary'>{caption}<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _heatmaps(ctx: ApiContext, rows: list[dict[str, Any]]) -> str:
    snap = ctx.snapshots.get()
    by_calendar: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_calendar.setdefault(r["calendar"], []).append(r)
    out = []
    for cal_name, group in by_calendar.items():
        cal = get_calendar(cal_name)
        days = expected_sessions(cal, 30, snap.taken_at)[-HEATMAP_SESSIONS:]
        head = "".join(f"<th scope='col'>{d.strftime('%m-%d')}</th>" for d in days)
        lines = []
        for r in group:
            cov = snap.coverage[r["asset_key"]]
            missing, partial = set(cov.missing), set(cov.partial)
            first = cov.first_expected or ""
            loaded_from = cov.first_session or "9999-12-31"  # nothing stored: not built yet
            cells = []
            for d in days:
                k = d.isoformat()
                if k < first:
                    cells.append("<td>-</td>")
                    continue
                if k < loaded_from:
                    state = "not loaded"
                else:
                    state = "missing" if k in missing else "partial" if k in partial else "complete"
                css, mark = CELL[state]
                cells.append(f"<td class='{css}' title='{k} {state}'>{mark}<span hidden>{state}</span></td>")
            lines.append(f"<tr><th scope='row'>{escape(r['asset_key'])}</th>{''.join(cells)}</tr>")
        out.append(
            f"<table class='heat'><caption>{escape(cal_name)}: the last {len(days)} sessions "
            "(✓ complete, ½ partial, ✗ missing, · not loaded yet)</caption>"
            f"<thead><tr><th scope='col'>asset</th>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
        )
    return "".join(out)


def _vendors(status: dict[str, Any]) -> str:
    if not status["vendors"]:
        return "<p>No vendor has been called yet.</p>"
    rows = "".join(
        f"<tr><th scope='row'>{escape(v['vendor'])}</th><td>{escape(v['state'])}</td><td>{escape(str(v['since']))}</td>"
        f"<td>{v['calls']}</td><td>{v['failures']}</td><td>{escape(v['detail'])}</td></tr>"
        for v in status["vendors"]
    )
    return (
        "<table id='vendors'><caption>Vendor health</caption><thead><tr><th scope='col'>vendor</th>"
        "<th scope='col'>state</th><th scope='col'>since</th><th scope='col'>calls</th><th scope='col'>failures</th>"
        f"<th scope='col'>detail</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _incidents(status: dict[str, Any]) -> str:
    if not status["open_incidents"]:
        return "<p>No open incident.</p>"
    rows = "".join(
        f"<tr><th scope='row'>#{i['id']}</th><td>{escape(i['asset_key'])}</td><td>{escape(str(i['opened_at']))}</td>"
        f"<td>{human_minutes(i['lag_minutes'] or 0)}</td><td>{escape(str(i['emailed_at'] or '-'))}</td></tr>"
        for i in status["open_incidents"]
    )
    return (
        "<table id='incidents'><caption>Open incidents</caption><thead><tr><th scope='col'>incident</th>"
        "<th scope='col'>asset</th><th scope='col'>opened</th><th scope='col'>lag</th><th scope='col'>emailed</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def render(ctx: ApiContext, summary: dict[str, Any], filters: dict[str, str]) -> str:
    status = ctx.snapshots.get().status
    sla_ok = summary["sla_ok"]
    verdicts = "; ".join(
        f"{escape(v['name'])}: {escape(v['actual'])} (target {escape(v['target'])}){'' if v['ok'] else ' MISSED'}"
        for v in summary["sla"]
    )
    universe = ctx.universe.specs
    form = (
        "<form method='get' action='/' aria-label='filters'>"
        f"<label for='f-q'>search<input id='f-q' name='q' value=\"{escape(filters.get('q', ''))}\"></label>"
        + _options("intervals", "interval", sorted({s.interval for s in universe}), filters.get("intervals"))
        + _options("asset_class", "asset class", sorted({s.asset_class for s in universe}), filters.get("asset_class"))
        + _options("state", "state", list(STATE_TEXT), filters.get("state"))
        + "<button type='submit'>Filter</button></form>"
    )
    export = {k: v for k, v in filters.items() if v} | {"format": "csv"}
    buckets = ", ".join(f"{k}: {v}" for k, v in summary["freshness_buckets"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>marketcov status</title><style>{CSS}</style></head>
<body><header><h1>marketcov status</h1>
<p>Checked {escape(summary["checked_at"])}. {escape(headline(summary))}. Freshness: {escape(buckets)}.</p></header>
<main>
<div class="banner {"pass" if sla_ok else "fail"}" role="status">SLA {"met" if sla_ok else "NOT met"}: {verdicts}</div>
<h2>Assets</h2>{form}
<p><a id="export" href="/api/status/summary?{escape(urlencode(export))}">Export CSV</a> ·
<a href="{escape(ctx.ui_url)}">Dagster UI</a> · <a href="/docs">API docs</a> · <a href="/metrics">metrics</a></p>
{_summary_table(summary["assets"])}
<h2>Coverage heatmap</h2>{_heatmaps(ctx, summary["assets"])}
<h2>Vendors</h2>{_vendors(status)}
<h2>Incidents</h2>{_incidents(status)}
</main></body></html>"""
