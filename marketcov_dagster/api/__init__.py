"""The read-side HTTP service (``marketcov serve``): status, coverage, lineage, runs, ops and
Prometheus metrics as JSON/CSV/text, and a server-rendered status page. Read-only; every answer
comes from the same plain-Python functions the CLI uses."""
