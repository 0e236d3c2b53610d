"""The offline simulator of new-customer behaviour: a seeded, vectorised world in which any
anstoss policy decides the touches, in-process or through a running server."""

from simulator.runner import POLICIES, SimulationResult, simulate
from simulator.scenario import Scenario, load_scenario, write_scenario

__all__ = [
    "POLICIES",
    "Scenario",
    "SimulationResult",
    "load_scenario",
    "simulate",
    "write_scenario",
]
