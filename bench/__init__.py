"""Benchmarks: speed and memory of the agent, each figure beside a baseline measured in the
same run. `python -m bench` runs every section and writes docs/benchmarks.md and .json."""
