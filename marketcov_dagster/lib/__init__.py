"""Plain-Python domain logic for marketcov: no Dagster imports live below this package."""
