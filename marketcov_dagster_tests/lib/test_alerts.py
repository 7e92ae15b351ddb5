"""Incidents and alert emails against a real SMTP server on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.freshness import Freshness, freshness
from marketcov_dagster.lib.mailer import MailConfigError, Mailer, SmtpSettings
from marketcov_dagster.lib.universe import AssetSpecification
from marketcov_dagster.lib.warehouse import Warehouse
from marketcov_dagster_tests.fakes.smtp import SmtpServer

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

SPEC = AssetSpecification("AAPL", "1m", "us_equity", "XNYS", ("alpaca", "polygon"), 90, 0.98, 60.0, 15.0)
OTHER = AssetSpecification("MSFT", "1m", "us_equity", "XNYS", ("alpaca", "polygon"), 90, 0.98, 60.0, 15.0)
VENDORS = {SPEC.key_str: SPEC.vendors, OTHER.key_str: OTHER.vendors}
STYLE = alerts.AlertStyle(ui_url="http://dagster.example:3000", subject_prefix="[mc-test]")
T0 = pd.Timestamp("2025-02-03 12:00", tz="America/New_York").to_pydatetime()


def ms(text: str) -> int:
    return int(pd.Timestamp(text, tz="America/New_York").timestamp() * 1000)


def stale(now: datetime, spec: AssetSpecification = SPEC) -> Freshness:
    return freshness(spec, ms("2025-02-03 10:00"), now)  # far behind all day


def fresh(now: datetime, spec: AssetSpecification = SPEC) -> Freshness:
    return freshness(spec, int(now.timestamp() * 1000) - 20 * 60_000, now)


def smtp(server: SmtpServer) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=server.port, sender="alerts@marketcov.test", recipients=("ops@x.test",))


def tick(wh: Warehouse, server: SmtpServer, *results: Freshness) -> alerts.FlushResult:
    alerts.update_incidents(wh, results, VENDORS, STYLE, now=datetime.fromisoformat(results[0].checked_at))
    return alerts.flush_outbox(wh, smtp(server))


def test_stale_sends_exactly_one_mail_then_one_recovery(warehouse: Warehouse, smtp_server: SmtpServer) -> None:
    warehouse.record_vendor_call("alpaca", "rate_limited", "HTTP 429: too many requests", 429)
    for i in range(6):  # an hour of ticks while stale
        tick(warehouse, smtp_server, stale(T0 + timedelta(minutes=10 * i)), fresh(T0, OTHER))
    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    body = smtp_server.body(0)
    (incident,) = alerts.list_incidents(warehouse)
    assert str(mail["Subject"]).startswith("[mc-test] STALE AAPL 1m: 1h 44m behind")
    assert f"incident #{incident['id']}" in str(mail["Subject"])
    assert mail["X-Envelope-To"] == "ops@x.test" and mail["From"] == "alerts@marketcov.test"
    for text in (
        "Symbol:          AAPL",
        "Interval:        1m",
        "Lag:             1h 44m",
        f"Incident:        #{incident['id']}",
        f"Detected at:     {T0.astimezone(UTC).isoformat()}",
        "alpaca: rate_limited, HTTP 429 since",
        "polygon: no calls recorded",
        "http://dagster.example:3000/assets/ohlcv/1m/AAPL",
    ):
        assert text in body, text
    assert incident["alert_sent_at"] is not None and incident["resolved_at"] is None
    assert incident["max_lag_minutes"] == 154.0  # the worst of the six ticks

    recovered_at = T0 + timedelta(minutes=95)
    for i in range(4):
        tick(warehouse, smtp_server, fresh(recovered_at + timedelta(minutes=10 * i)), fresh(T0, OTHER))
    assert len(smtp_server.messages) == 2
    recovery = smtp_server.messages[1]
    assert str(recovery["Subject"]) == (
        f"[mc-test] RECOVERED AAPL 1m (incident #{incident['id']}, data up to 2h 34m behind, open for 1h 35m)"
    )
    assert "Incident open:   1h 35m" in smtp_server.body(1)
    (done,) = alerts.list_incidents(warehouse)
    assert done["resolved_at"] == recovered_at and done["recovery_sent_at"] is not None

    # stale again later: a new incident, a new single mail
    tick(warehouse, smtp_server, stale(T0 + timedelta(hours=3)))
    tick(warehouse, smtp_server, stale(T0 + timedelta(hours=3, minutes=10)))
    assert len(smtp_server.messages) == 3 and len(alerts.list_incidents(warehouse, open_only=True)) == 1


def test_smtp_down_keeps_the_mail_pending_and_sends_it_once_when_up(
    warehouse: Warehouse, smtp_server: SmtpServer
) -> None:
    smtp_server.stop()
    for i in range(3):
        res = tick(warehouse, smtp_server, stale(T0 + timedelta(minutes=10 * i)))
        assert res.sent == 0 and res.pending == 1 and res.error and "unreachable" in res.error
    (incident,) = alerts.list_incidents(warehouse)
    assert incident["alert_sent_at"] is None
    (queued,) = alerts.list_outbox(warehouse)
    assert queued["attempts"] == 3 and "unreachable" in queued["last_error"]

    smtp_server.start()
    res = tick(warehouse, smtp_server, stale(T0 + timedelta(minutes=30)))
    assert (res.sent, res.pending) == (1, 0)
    tick(warehouse, smtp_server, stale(T0 + timedelta(minutes=40)))
    assert len(smtp_server.messages) == 1
    assert alerts.list_incidents(warehouse)[0]["alert_sent_at"] is not None


def test_a_restart_between_ticks_neither_duplicates_nor_loses(warehouse: Warehouse, smtp_server: SmtpServer) -> None:
    # the incident opens, then the evaluator dies before flushing
    alerts.update_incidents(warehouse, [stale(T0)], VENDORS, STYLE, now=T0)
    again = Warehouse(warehouse.url)  # a new process: nothing in memory survives
    try:
        later = T0 + timedelta(minutes=10)
        alerts.update_incidents(again, [stale(later)], VENDORS, STYLE, now=later)
        assert alerts.flush_outbox(again, smtp(smtp_server)).sent == 1
        assert alerts.flush_outbox(warehouse, smtp(smtp_server)).sent == 0
    finally:
        again.dispose()
    assert len(smtp_server.messages) == 1 and len(alerts.list_incidents(warehouse)) == 1


def test_outbox_dedups_by_key_and_claims_before_sending(warehouse: Warehouse, smtp_server: SmtpServer) -> None:
    assert alerts.enqueue(warehouse, "run_failed:abc", "run_failed", "s", "b")
    assert not alerts.enqueue(warehouse, "run_failed:abc", "run_failed", "s", "b")
    with pytest.raises(ValueError, match="unknown alert kind"):
        alerts.enqueue(warehouse, "x", "nonsense", "s", "b")
    # a flusher that claimed the message and crashed: nobody else sends it until the claim lapses
    warehouse.execute("UPDATE outbox SET claimed_until = :t", {"t": datetime.now(UTC).timestamp() + 60})
    assert alerts.flush_outbox(warehouse, smtp(smtp_server)).sent == 0
    warehouse.execute("UPDATE outbox SET claimed_until = 0")
    assert alerts.flush_outbox(warehouse, smtp(smtp_server)).sent == 1
    assert smtp_server.subjects() == ["s"]


def test_unconfigured_email_keeps_alerts_pending(warehouse: Warehouse) -> None:
    alerts.update_incidents(warehouse, [stale(T0)], VENDORS, STYLE, now=T0)
    res = alerts.flush_outbox(warehouse, SmtpSettings())
    assert (res.sent, res.pending, res.error) == (0, 1, "email is not configured")


def test_bad_smtp_settings_are_refused_by_name() -> None:
    for settings, match in (
        (SmtpSettings(host="h", recipients=("a@b",), security="tls"), "security 'tls'"),
        (SmtpSettings(host="h", recipients=("not-an-address",)), "'not-an-address' is not an email address"),
        (SmtpSettings(host="h", recipients=("a@b",), password="pw"), "password is set without a user"),
        (SmtpSettings(host="h", recipients=("a@b",), port=70000), "port 70000"),
    ):
        with pytest.raises(MailConfigError, match=match):
            Mailer(settings)


def test_login_failure_names_the_user_not_the_password(smtp_server: SmtpServer) -> None:
    settings = SmtpSettings(
        host="127.0.0.1", port=smtp_server.port, username="bot", password="s3cr3t-pw", recipients=("a@b.c",)
    )
    with Mailer(settings) as m, pytest.raises(Exception) as err:
        m.send("s", "b", "<x@y>")
    assert "s3cr3t-pw" not in str(err.value) and "127.0.0.1" in str(err.value)
