"""The docs tell the truth by test: every job, schedule, sensor and asset check the code location
defines is named in the docs, every one the docs name exists, and every ``marketcov`` subcommand
and option the docs use exists (and every subcommand is documented)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from marketcov_dagster.cli import _parser
from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.lib.universe import load_universe

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
TICKED = re.compile(r"`([^`\s]+)`")


def _docs() -> str:
    return "\n".join(p.read_text() for p in DOC_FILES)


def _patterns(text: str) -> list[re.Pattern[str]]:
    """Names written with a placeholder, e.g. `ohlcv_<calendar>_<interval>_verify_job`."""
    return [
        re.compile("^" + re.sub(r"<[^>]+>", "[a-z0-9_]+", re.escape(t).replace(r"\<", "<").replace(r"\>", ">")) + "$")
        for t in TICKED.findall(text)
        if "<" in t
    ]


def _code_names() -> dict[str, set[str]]:
    defs = build_definitions(load_universe(ROOT / "marketcov.yaml"))
    repo = defs.get_repository_def()
    return {
        "job": {j.name for j in repo.get_all_jobs() if not j.name.startswith("__")},
        "schedule": {s.name for s in repo.schedule_defs},
        "sensor": {s.name for s in repo.sensor_defs},
        "check": {k.name for k in defs.resolve_asset_graph().asset_check_keys},
    }


def test_every_job_schedule_sensor_and_check_is_documented_and_every_documented_one_exists() -> None:
    text = _docs()
    ticked = set(TICKED.findall(text))
    patterns = _patterns(text)
    names = _code_names()
    for kind, defined in names.items():
        missing = sorted(n for n in defined if n not in ticked and not any(p.match(n) for p in patterns))
        assert missing == [], f"the docs never name these {kind}s: {missing}"
    every = set().union(*names.values())
    suffixes = ("_job", "_schedule", "_sensor")
    claimed = {t for t in ticked if t.endswith(suffixes) and "<" not in t and re.fullmatch(r"[a-z0-9_]+", t)}
    assert sorted(claimed - every) == [], "the docs name jobs/schedules/sensors the code location lacks"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_cli_subcommand_and_option_in_the_docs_exists_and_every_subcommand_is_documented() -> None:
    subs = _subcommands()
    global_options = set(_parser()._option_string_actions)
    used: set[str] = set()
    for line in _docs().splitlines():
        # commands as written: `marketcov …` in backticks, or .venv/bin/marketcov … in a code block
        for m in re.finditer(r"(?:`|bin/)marketcov\s+(?:--config\s+\S+\s+)?([a-z][a-z-]*)((?:\s+[^|`#]*)?)", line):
            sub, rest = m.group(1), m.group(2)
            assert sub in subs, f"docs use `marketcov {sub}`, which does not exist: {line.strip()}"
            used.add(sub)
            options = set(subs[sub]._option_string_actions) | global_options
            for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                assert opt in options, f"`marketcov {sub}` has no option {opt}: {line.strip()}"
    assert sorted(set(subs) - used) == [], "subcommands the docs never show"


def test_each_subcommands_help_says_what_it_does_where_it_reads_and_shows_valid_examples() -> None:
    import shlex

    from marketcov_dagster.cli_help import SUBCOMMANDS

    subs = _subcommands()
    assert set(SUBCOMMANDS) == set(subs)
    for name, sp in subs.items():
        text = sp.format_help()
        description = text.split("\n\n", 2)[1]
        assert description[0].isupper() and "." in description, (name, description)
        assert "Reads the" in description or "reads the" in description, (name, description)
        examples = [line.strip() for line in text.splitlines() if line.strip().startswith("marketcov ")]
        assert examples, name
        for example in examples:
            words = shlex.split(example.split(">")[0])
            _parser().parse_args(words[1:])  # argparse exits (a failure here) on an invalid example
