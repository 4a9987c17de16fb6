"""Builders for tiny random-weight models (tests, self-test, benchmarks); offline and fast."""
