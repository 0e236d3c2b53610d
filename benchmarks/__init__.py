"""`make bench`: performance figures, printed and written to benchmarks/results.json."""
