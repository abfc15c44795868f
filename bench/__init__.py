"""Benchmark suite: the router against a plain-stack baseline and its peers, on a fake upstream."""
