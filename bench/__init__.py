"""Benchmarks, run by hand (see BENCHMARKS.md); CI runs each at a small size as a smoke test."""
