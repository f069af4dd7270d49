"""Benchmarks: the runner, the case registry, one module of cases per ops family, vision throughput."""
