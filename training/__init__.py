"""Training from response history: datasets from decision logs (more to come: offline training,
off-policy evaluation, MLflow tracking). Imports the engine, never the simulator."""

from training.dataset import DecisionLog, read_decision_log

__all__ = ["DecisionLog", "read_decision_log"]
