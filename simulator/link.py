"""How the simulator reaches the engine: in-process, or through gRPC as a channel system would.

Both links take the same engine batches. `InProcessLink` calls a `DecisionEngine` on a memory
store directly; `GrpcLink` sends the same requests over one `DecideStream` to a running
`anstoss serve` and reports events with `ReportEvents`. Same scenario and seed, same outcomes.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from engine.catalog import Catalog, action_key
from engine.decide import DecisionEngine
from engine.decisions import DecisionBatch
from engine.errors import AnstossError
from engine.logschema import DECISION_COLUMNS, seconds_to_utc, to_json
from engine.requests import DecideBatch, EventBatch, EventResult
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.client import DecisionClient, decide_requests, events_message

CHUNK = 500  # requests per stream message
IN_PROCESS_CHUNK = 20_000  # requests per engine call in-process (batching never changes results)
EVENT_CHUNK = 5000


def _key(action: pb.Action) -> str:
    return action_key(action.touchpoint, action.channel)


class SimulationError(AnstossError):
    """The engine refused something the simulator sent."""


@dataclass
class Decided:
    ids: list[str] | list[DecisionBatch]  # ids, or the engine's batches that format them
    actions: np.ndarray  # (n,) catalog action index
    probability: np.ndarray  # (n,)
    arm: np.ndarray  # (n,) index into the link's arm names
    allowed: np.ndarray  # (n, A) bool: the eligible actions

    @property
    def decision_ids(self) -> list[str]:
        """Formatted on demand: a large in-process run never needs most of them."""
        if self.ids and isinstance(self.ids[0], DecisionBatch):
            return [i for batch in self.ids for i in batch.decision_ids or []]  # type: ignore[union-attr]
        return self.ids  # type: ignore[return-value]


class EngineLink(Protocol):
    arm_names: tuple[str, ...]
    arm_policies: tuple[str, ...]

    def decide(self, batch: DecideBatch) -> Decided: ...

    def report(self, events: EventBatch) -> None: ...

    def decisions_frame(self) -> pd.DataFrame: ...

    def close(self) -> None: ...


class InProcessLink:
    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine
        self.arm_names = engine.experiment.names
        self.arm_policies = tuple(p.kind for p in engine.policies)

    def decide(self, batch: DecideBatch) -> Decided:
        ids: list[DecisionBatch] = []
        actions, probability, arm, allowed = [], [], [], []
        for start in range(0, len(batch), IN_PROCESS_CHUNK):
            decisions = self.engine.decide(batch.slice(start, start + IN_PROCESS_CHUNK))
            ids.append(decisions)
            actions.append(decisions.chosen)
            probability.append(decisions.probability)
            arm.append(decisions.arm)
            allowed.append(decisions.allowed)
        return Decided(
            ids,
            np.concatenate(actions),
            np.concatenate(probability),
            np.concatenate(arm),
            np.concatenate(allowed),
        )

    def report(self, events: EventBatch) -> None:
        for result in self.engine.report_events(events):
            if not isinstance(result, EventResult):
                raise SimulationError(f"engine refused an event: {result}")

    def decisions_frame(self) -> pd.DataFrame:
        return self.engine.store.decisions_frame()

    def close(self) -> None:
        self.engine.close()


class GrpcLink:
    """Plays the channel system against `anstoss serve` at `target`."""

    def __init__(self, target: str, catalog: Catalog) -> None:
        self.catalog = catalog
        self.client = DecisionClient(target, timeout=120)
        self.client.wait_ready(30)
        info = self.client.catalog()
        served = [_key(a.action) for a in info.actions]
        if served != list(catalog.action_keys):
            raise SimulationError(
                f"the server at {target} serves another catalog than the scenario's"
                f" ({len(served)} vs {catalog.n_actions} actions); start it with the same catalog"
            )
        self.arm_names = tuple(a.name for a in info.arms)
        self.arm_policies = tuple(a.policy for a in info.arms)
        self._outbox: queue.Queue[list[pb.DecideRequest] | None] = queue.Queue()
        self._replies = self.client.decide_stream(self._requests())
        self._seen: list[pb.Decision] = []

    def _requests(self) -> Iterator[list[pb.DecideRequest]]:
        while (batch := self._outbox.get()) is not None:
            yield batch

    def decide(self, batch: DecideBatch) -> Decided:
        ids: list[str] = []
        actions, probability, arm = [], [], []
        allowed = np.zeros((len(batch), self.catalog.n_actions), dtype=bool)
        arm_index = {name: i for i, name in enumerate(self.arm_names)}
        requests = decide_requests(batch, self.catalog)
        for start in range(0, len(requests), CHUNK):
            self._outbox.put(requests[start : start + CHUNK])
            reply = next(self._replies)
            for result in reply.results:
                if result.HasField("error"):
                    raise SimulationError(
                        f"engine refused a request: {result.error.field}: {result.error.message}"
                    )
                d = result.decision
                key = _key(d.action)
                for e in d.eligible:
                    allowed[
                        len(ids), self.catalog.action_index(e.action.touchpoint, e.action.channel)
                    ] = True
                ids.append(d.decision_id)
                actions.append(self.catalog.index_of_key(key))
                probability.append(d.probability)
                arm.append(arm_index[d.arm])
                self._seen.append(d)
        return Decided(
            ids,
            np.array(actions, dtype=np.int64),
            np.array(probability),
            np.array(arm, dtype=np.int64),
            allowed,
        )

    def report(self, events: EventBatch) -> None:
        message = events_message(events, self.catalog)
        for start in range(0, len(message.events), EVENT_CHUNK):
            chunk = pb.ReportEventsRequest(events=message.events[start : start + EVENT_CHUNK])
            for result in self.client.report_events(chunk).results:
                if result.HasField("error"):
                    raise SimulationError(
                        f"engine refused an event: {result.error.field}: {result.error.message}"
                    )

    def decisions_frame(self) -> pd.DataFrame:
        """What the channel system saw; rewards and features live in the server's log."""
        rows = []
        for d in self._seen:
            rows.append(
                {
                    "decision_id": d.decision_id,
                    "seq": np.nan,
                    "time": d.time.seconds,
                    "customer_id": d.customer_id,
                    "experiment": d.experiment,
                    "arm": d.arm,
                    "policy": d.policy,
                    "model_version": d.model_version,
                    "action": _key(d.action),
                    "touchpoint": d.action.touchpoint,
                    "channel": d.action.channel,
                    "probability": d.probability,
                    "cost": d.cost,
                    "features": "",
                    "eligible": to_json([_key(e.action) for e in d.eligible]),
                    "probabilities": to_json([e.probability for e in d.eligible]),
                    "removed": to_json([[_key(r.action), int(r.rule)] for r in d.removed]),
                    "window_end": d.attribution_window_end.seconds,
                }
            )
        frame = pd.DataFrame(
            rows, columns=[c for c in DECISION_COLUMNS if c in (rows[0] if rows else {})]
        )
        for column in ("time", "window_end"):
            frame[column] = seconds_to_utc(frame[column])
        for column in DECISION_COLUMNS:
            if column not in frame:
                frame[column] = pd.NA
        return frame[list(DECISION_COLUMNS)]

    def close(self) -> None:
        self._outbox.put(None)
        for _ in self._replies:  # drain: the server ends the stream when we do
            pass
        self.client.close()
