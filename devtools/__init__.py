"""Development-only tools: the local stack (`make run`, tests, benchmarks) and a mail sink.

Not part of what production runs: the container image does not ship this package.
"""
