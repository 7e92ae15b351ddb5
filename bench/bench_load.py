"""Code location load at scale: ``dagster definitions validate`` with N symbols and every
interval of the default universe (1d, 1m, the 5m/15m/1h candles, the 1d indicators), versus the
default universe (12 symbols), in fresh processes, with peak memory.

    .venv/bin/python -m bench.bench_load                  # 500 symbols: 3,000 assets
    .venv/bin/python -m bench.bench_load --smoke          # 20 symbols
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import clean_env, report
from marketcov_dagster.lib.universe import parse_universe

ROOT = Path(__file__).resolve().parents[1]


def universe(n_symbols: int) -> dict[str, object]:
    cfg = yaml.safe_load((ROOT / "marketcov.yaml").read_text())
    equities = max(1, n_symbols - 2)
    cfg["asset_classes"]["us_equity"]["symbols"] = [f"S{i:04d}" for i in range(equities)]
    return dict(cfg)


def n_assets(cfg: dict[str, object]) -> int:
    universe = parse_universe(cfg)
    return len(universe.specs) + len(universe.indicator_specs)


def validate(config: Path, home: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one ``dagster definitions validate`` process."""
    env = clean_env(home, config)
    dagster = Path(sys.executable).with_name("dagster")
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "marketcov_dagster.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--symbols", type=int, default=500)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.symbols, args.repeat = 20, 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        default = yaml.safe_load((ROOT / "marketcov.yaml").read_text())
        big = universe(args.symbols)
        for label, cfg in (
            (f"default (12 symbols, {n_assets(default)} assets)", None),
            (f"{args.symbols} symbols, {n_assets(big):,} assets", big),
        ):
            path = ROOT / "marketcov.yaml" if cfg is None else Path(tmp) / "big.yaml"
            if cfg is not None:
                path.write_text(yaml.safe_dump(cfg))
            runs = [validate(path, Path(tmp)) for _ in range(args.repeat)]
            results[label] = (min(r[0] for r in runs), max(r[1] for r in runs))
        (base_label, (base_t, base_m)), (big_label, (big_t, big_m)) = results.items()
        rows.append([base_label, f"{base_t:.1f} s", f"{base_m:.0f} MiB", "1.00", "-"])
        rows.append(
            [
                big_label,
                f"{big_t:.1f} s",
                f"{big_m:.0f} MiB",
                f"{big_t / base_t:.2f}",
                "<= 15 s",
            ]
        )
    report(
        "Code location load (`dagster definitions validate`)",
        ["universe", "wall (best)", "peak RSS (max)", "time vs default", "target"],
        rows,
        "python -m bench.bench_load" + (" --smoke" if args.smoke else ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
