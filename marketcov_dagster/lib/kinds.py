"""The remediation log's kinds (a leaf module: the CLI's parser names them without importing the
warehouse)."""

REMEDIATION_KINDS = (
    "gap",
    "invalid_bars",
    "vendor_error",
    "vendor_fallback",
    "checksum_mismatch",
    "outside_sessions",
    "interval_mismatch",
    "source_mismatch",
    "vendor_divergence",
    "revised",
)

SESSION_STATE_KINDS = frozenset(
    {
        "gap",
        "vendor_fallback",
        "invalid_bars",
        "checksum_mismatch",
        "outside_sessions",
        "interval_mismatch",
        "source_mismatch",
        "vendor_divergence",
        "revised",
    }
)
"""Remediation kinds that describe a session's state (logged once per state, not per finding)."""
