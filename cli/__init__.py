"""The `anstoss` command: the one place that composes engine, simulator and training."""
