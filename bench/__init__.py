"""Herald's reproducible benchmarks: `python -m bench --quick` (or `--full`). See docs/benchmarks.md."""
