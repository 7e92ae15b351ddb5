"""The embedded default Dagster instance: its ``dagster.yaml`` and its event log storage."""
