"""Benchmarks run by `make bench`; each writes benchmarks/results/<name>.json."""
