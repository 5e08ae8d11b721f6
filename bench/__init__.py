"""Benchmarks: fleet generation, the per-preset baseline and the harness (issue 4)."""
