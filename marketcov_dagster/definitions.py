"""The marketcov code location: Definitions built from the universe config (``marketcov.yaml``)."""

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.lib.universe import load_universe

defs = build_definitions(load_universe())
