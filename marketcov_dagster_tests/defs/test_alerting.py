"""The alert sensors through Dagster's own sensor contexts, a real instance, a real warehouse and a
real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.sensor_definition import SensorExecutionData  # what the daemon sees

from marketcov_dagster.defs.alerting import FAILURE_SENSOR, FRESHNESS_SENSOR
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from marketcov_dagster.defs.resources import EmailResource, WarehouseResource
from marketcov_dagster.lib import alerts
from marketcov_dagster.lib.warehouse import Verdict, Warehouse
from marketcov_dagster_tests.conftest import small_universe
from marketcov_dagster_tests.fakes.smtp import SmtpServer

pytestmark = pytest.mark.date_sensitive  # also run with the clock moved ahead (.ci/run)

T0 = pd.Timestamp("2025-02-03 12:00", tz="America/New_York").to_pydatetime()  # a Monday, mid-session


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def put_bar(wh: Warehouse, symbol: str, at: datetime) -> None:
    """Store one 1m bar opening at ``at`` (the newest bar is all freshness looks at)."""
    wh.execute(
        "INSERT INTO bars (symbol, interval, ts, open, high, low, close, volume) VALUES (:s, '1m', :ts, 1, 1, 1, 1, 1)",
        {"s": symbol, "ts": int(at.timestamp() * 1000)},
    )


@pytest.fixture
def setup(
    tmp_path: Path, smtp_server: SmtpServer
) -> Iterator[tuple[Callable[[], dg.Definitions], Clock, Warehouse, Path]]:
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    clock = Clock(T0)
    email = EmailResource(
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        recipients="ops@desk.test, quant@desk.test",
        ui_url="http://ui.test:3000",
    )

    def defs() -> dg.Definitions:  # what a (re)started code server loads
        universe = small_universe(
            intervals={"1d": {"window_days": 30}, "1m": {"window_days": 30}},
            asset_classes={
                "us_equity": {"calendar": "XNYS", "vendors": ["synthetic"], "intervals": ["1m"], "symbols": ["AAPL"]},
                "crypto": {"calendar": "24/7", "vendors": ["synthetic"], "intervals": ["1m"], "symbols": ["BTCUSDT"]},
            },
        )
        return build_definitions(universe, warehouse=WarehouseResource(url=url), email=email, clock=clock)

    (tmp_path / "home").mkdir()
    wh = Warehouse(url)
    yield defs, clock, wh, tmp_path / "home"
    wh.dispose()


def tick(defs: dg.Definitions, home: Path, name: str, cursor: str | None = None) -> SensorExecutionData:
    """One evaluation as the daemon does it, on a freshly opened instance (a restart each time)."""
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        sensor = defs.get_repository_def().get_sensor_def(name)
        # a context manager: the resources include an IO manager, which Dagster opens and closes
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, definitions=defs, resources=dict(defs.resources or {})
        ) as ctx:
            return sensor.evaluate_tick(ctx)


def test_freshness_sensor_mails_once_per_incident_across_restarts_and_an_smtp_outage(setup, smtp_server) -> None:  # type: ignore[no-untyped-def]
    defs, clock, wh, home = setup
    put_bar(wh, "AAPL", T0 - timedelta(hours=2))  # 1h45m behind the expected 11:45
    put_bar(wh, "BTCUSDT", T0 - timedelta(minutes=3))
    messages = []
    for i in range(4):  # 40 minutes of ticks; every tick a fresh instance and freshly loaded code
        clock.now = T0 + timedelta(minutes=10 * i)
        res = tick(defs(), home, FRESHNESS_SENSOR)
        messages.append(res.skip_message)
    assert smtp_server.subjects() == ["[marketcov] STALE AAPL 1m: 1h 44m behind (incident #1)"]
    assert smtp_server.messages[0]["X-Envelope-To"] == "ops@desk.test, quant@desk.test"
    assert "http://ui.test:3000/assets/ohlcv/1m/AAPL" in smtp_server.body(0)
    assert "opened [1]" in messages[0] and "still open 1" in messages[3]
    assert [i["asset_key"] for i in alerts.list_incidents(wh)] == ["ohlcv/1m/AAPL"]  # BTCUSDT is fresh

    # AAPL catches up while the SMTP server is down: the recovery mail waits, then goes out once
    smtp_server.stop()
    put_bar(wh, "AAPL", T0 + timedelta(minutes=30))
    clock.now = T0 + timedelta(minutes=50)
    down = tick(defs(), home, FRESHNESS_SENSOR)
    assert "resolved [1]" in (down.skip_message or "") and "unreachable" in (down.skip_message or "")
    smtp_server.start()
    for i in range(2):
        clock.now = T0 + timedelta(minutes=60 + 10 * i)
        tick(defs(), home, FRESHNESS_SENSOR)
    aapl = [s for s in smtp_server.subjects() if "AAPL 1m" in s]
    assert aapl == [
        "[marketcov] STALE AAPL 1m: 1h 44m behind (incident #1)",
        "[marketcov] RECOVERED AAPL 1m (incident #1, data up to 2h 14m behind, open for 50 min)",
    ]


def test_failure_sensor_mails_each_failed_run_and_failed_check_once(setup, smtp_server) -> None:  # type: ignore[no-untyped-def]
    defs_fn, _clock, wh, home = setup
    defs = defs_fn()
    broken = build_definitions(
        small_universe(
            asset_classes={
                "us_equity": {"calendar": "XNYS", "vendors": ["alpaca"], "intervals": ["1d"], "symbols": ["AAPL"]}
            }
        ),
        now=T0,
        warehouse=WarehouseResource(url=wh.url),
    )
    job = broken.resolve_job_def("ohlcv_xnys_1d_job")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        # a failure before the sensor first runs is not its to report
        assert not job.execute_in_process(instance=instance, partition_key="2025-01-30", raise_on_error=False).success
    first = tick(defs, home, FAILURE_SENSOR)
    assert "queued 0 run failure(s) and 0 failed check(s)" in (first.skip_message or "")

    with dg.instance_for_test(temp_dir=str(home)) as instance:
        failed = job.execute_in_process(instance=instance, partition_key="2025-01-31", raise_on_error=False)
        assert not failed.success
        tags = {RANGE_START_TAG: "2025-01-29", RANGE_END_TAG: "2025-01-30"}
        minute_job = defs.resolve_job_def("ohlcv_xnys_1m_job")
        key = dg.AssetKey(["ohlcv", "1m", "AAPL"])
        assert minute_job.execute_in_process(instance=instance, asset_selection=[key], tags=tags).success
        wh.execute("DELETE FROM bars WHERE symbol = 'AAPL' AND interval = '1m' AND ts % 7 = 0")  # damage
        verify = defs.resolve_job_def("ohlcv_xnys_1m_verify_job")
        checked = verify.execute_in_process(instance=instance, asset_selection=[], tags=tags, raise_on_error=False)
        assert checked.success  # failed checks do not fail the run: hence the email
    second = tick(defs, home, FAILURE_SENSOR, first.cursor)
    third = tick(defs, home, FAILURE_SENSOR, second.cursor)
    assert "queued 1 run failure(s) and 2 failed check(s)" in (second.skip_message or "")
    assert "queued 0 run failure(s) and 0 failed check(s)" in (third.skip_message or "")
    subjects = smtp_server.subjects()
    assert subjects[0] == f"[marketcov] RUN FAILED ohlcv_xnys_1d_job (run {failed.run_id[:8]})"
    assert f"http://ui.test:3000/runs/{failed.run_id}" in smtp_server.body(0)
    assert "step ohlcv_xnys_1d: ohlcv/1d/AAPL: VendorError: " in smtp_server.body(0)
    assert "AAPL 1d: every vendor failed: ['alpaca: no API key" in smtp_server.body(0)
    check_mails = sorted(subjects[1:])
    assert [s.split(" (run")[0] for s in check_mails] == [
        "[marketcov] CHECK FAILED ohlcv/1m/AAPL bar_count_matches_calendar: 2 partition(s)",
        "[marketcov] CHECK FAILED ohlcv/1m/AAPL checksum_matches: 2 partition(s)",
    ]
    bodies = "\n".join(smtp_server.body(i) for i in range(1, 3))
    assert "2025-01-29, 2025-01-30" in bodies and "ohlcv/1m/AAPL?view=checks" in bodies
    assert len(subjects) == 3
    assert wh.count_bars(symbol="AAPL") > 0 and datetime.now(UTC) > T0


def test_smtp_password_reaches_dagster_only_as_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    from marketcov_dagster.defs.build import email_resource

    monkeypatch.setenv("MARKETCOV_SMTP_HOST", "smtp.desk.test")
    monkeypatch.setenv("MARKETCOV_SMTP_PORT", "2525")
    monkeypatch.setenv("MARKETCOV_SMTP_USER", "bot")
    monkeypatch.setenv("MARKETCOV_SMTP_PASSWORD", "hunter2-secret")
    res = email_resource()
    assert isinstance(res.smtp_password, dg.EnvVar) and "hunter2-secret" not in repr(res)
    # resolved only when the resource is used, inside the run or tick
    resolved = res.process_config_and_initialize()
    settings = resolved.settings()
    assert (settings.host, settings.port, settings.username, settings.password) == (
        "smtp.desk.test",
        2525,
        "bot",
        "hunter2-secret",
    )


def test_a_run_whose_process_died_is_failed_and_mailed_once_with_the_reason(setup, smtp_server) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from marketcov_dagster.defs.orphans import LAUNCHED_BY_TAG, ORPHAN_SENSOR, PROCESS_TAG_PREFIX
    from marketcov_dagster.lib.processes import current

    defs_fn, _clock, _wh, home = setup
    defs = defs_fn()
    first = tick(defs, home, FAILURE_SENSOR)  # the failure sensor starts from now
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = current()
    dead = type(me)(me.host, me.boot, int(gone.stdout), "1")  # a process that has ended
    job = defs.resolve_job_def("ohlcv_xnys_1m_job")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run = instance.create_run_for_job(
            job_def=job,
            tags={LAUNCHED_BY_TAG: "cli", **dead.as_tags(PROCESS_TAG_PREFIX)},
            status=dg.DagsterRunStatus.STARTED,
        )
        alive = instance.create_run_for_job(
            job_def=job,
            tags={LAUNCHED_BY_TAG: "cli", **me.as_tags(PROCESS_TAG_PREFIX)},
            status=dg.DagsterRunStatus.STARTED,
        )
    swept = tick(defs, home, ORPHAN_SENSOR)
    assert f"marked 1 orphaned run(s) failed: {run.run_id}" in (swept.skip_message or "")
    second = tick(defs, home, FAILURE_SENSOR, first.cursor)
    third = tick(defs, home, FAILURE_SENSOR, second.cursor)
    assert "queued 1 run failure(s)" in (second.skip_message or "")
    assert "queued 0 run failure(s)" in (third.skip_message or "")
    assert smtp_server.subjects() == [f"[marketcov] RUN FAILED ohlcv_xnys_1m_job (run {run.run_id[:8]})"]
    assert f"pid {dead.pid}" in smtp_server.body(0) and "ended without finishing it" in smtp_server.body(0)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]


def test_lost_partitions_are_mailed_once_per_asset_and_set_of_them(setup, smtp_server) -> None:  # type: ignore[no-untyped-def]
    defs_fn, _clock, wh, home = setup
    key = dg.AssetKey(["ohlcv", "1m", "AAPL"])
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        job = defs_fn().resolve_job_def("ohlcv_xnys_1m_job")
        tags = {RANGE_START_TAG: "2025-01-28", RANGE_END_TAG: "2025-01-30"}
        assert job.execute_in_process(instance=instance, asset_selection=[key], tags=tags).success
    # one partition's bars and lineage gone (a restore from an old file, a careless DELETE)
    wh.execute("DELETE FROM bars WHERE symbol = 'AAPL' AND ts >= :lo AND ts < :hi", _window("2025-01-29"))
    wh.execute("DELETE FROM partition_lineage WHERE symbol = 'AAPL' AND session = '2025-01-29'")

    def lost() -> list[int]:
        return [i for i, s in enumerate(smtp_server.subjects()) if " LOST " in s]

    for _ in range(2):  # mailed once, however many ticks see it
        tick(defs_fn(), home, FRESHNESS_SENSOR)
    (first,) = lost()
    assert smtp_server.subjects()[first] == "[marketcov] LOST ohlcv/1m/AAPL: 1 partition(s) gone or damaged"
    assert "Partitions: 2025-01-29" in smtp_server.body(first) and "backfill --missing" in smtp_server.body(first)
    # another partition's stored bars fail their checksum: damaged counts as lost, a new set, a new mail
    wh.record_verdicts("AAPL", "1m", [Verdict("2025-01-30", "checksum_matches", False, "ERROR", "hash moved")], "v")
    tick(defs_fn(), home, FRESHNESS_SENSOR)
    assert len(lost()) == 2 and "2 partition(s)" in smtp_server.subjects()[lost()[1]]
    assert "2025-01-29, 2025-01-30" in smtp_server.body(lost()[1])


def _window(session: str) -> dict[str, int]:
    from marketcov_dagster.lib.calendars import get_calendar

    lo, hi = get_calendar("XNYS").partition_window_ms(datetime.fromisoformat(session).date())
    return {"lo": lo, "hi": hi}
