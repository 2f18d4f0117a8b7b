"""Benchmarks: each module measures one path against the floor it sits on, in the same run."""
