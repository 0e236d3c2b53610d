"""The Vowpal Wabbit adapter: the one module that owns VW arguments and example construction.

Swapping the learner (e.g. for the maintained `vowpalwabbit` 9.x package) touches only this file.

Examples are built pre-hashed, the fast way: feature indices come from
``Workspace.get_index_for_scalar_feature`` (cached per name) and are pushed in one call per
example; the action examples are built once per catalog and reused for every request. The
indices equal what VW's text parser computes for ``shared |U name:value cat=value`` and
``|A a=key tp=touchpoint ch=channel``, so a model trained from text or DSJson exports of the log
with the same names serves unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import vowpal_wabbit_next as vw

from engine.catalog import Catalog
from engine.config import BanditConfig
from engine.errors import ModelError, PartialUpdate
from engine.features import CATEGORICAL_FEATURES, EXTRA_PREFIX, NUMERIC_FEATURES, FeatureBatch

SHARED_NS = "U"
ACTION_NS = "A"
_CACHE_LIMIT = 200_000  # distinct categorical values kept hashed; cleared beyond
_SHARED_LABEL = vw.CBLabel(shared=True)


def vw_arguments(config: BanditConfig) -> list[str]:
    """The VW command line for a bandit configuration."""
    args = [
        "--cb_explore_adf",
        "--cb_type", config.cb_type,
        "-l", repr(config.learning_rate),
        "--power_t", repr(config.power_t),
        "--quiet",
    ]  # fmt: skip
    if config.exploration == "squarecb":
        args += ["--squarecb", "--gamma_scale", repr(config.squarecb_gamma_scale)]
    else:
        args += ["--epsilon", repr(config.epsilon)]
    for pair in config.interactions:
        args += ["-q", pair]
    return args + list(config.extra_args)


@dataclass
class SharedFeatures:
    """Hashed shared features of n rows: row i is indices/values[bounds[i]:bounds[i + 1]]."""

    indices: np.ndarray  # uint64
    values: np.ndarray  # float32
    bounds: list[int]


def _push(ex: vw.Example, namespace: str, indices: np.ndarray, values: np.ndarray) -> None:
    """Pre-hashed features into a namespace (indices uint64, values float32)."""
    group: Any = ex[namespace]  # the binding's stub mistypes push_many_features' arrays
    group.push_many_features(
        indices.astype(np.uint64, copy=False), values.astype(np.float32, copy=False)
    )


class VWModel:
    """A `cb_explore_adf` workspace over the catalog's actions, with cheap example construction."""

    def __init__(self, config: BanditConfig, catalog: Catalog, model_data: bytes | None = None):
        self.args = vw_arguments(config)
        try:
            self.workspace = vw.Workspace(self.args, model_data=model_data)
        except Exception as exc:  # the binding raises plain RuntimeError/CLIError on bad input
            what = "model" if model_data is not None else "arguments"
            raise ModelError(f"cannot load VW {what} ({' '.join(self.args)}): {exc}") from exc
        self.catalog = catalog
        self._num_index = np.array(
            [self._index(name) for name in NUMERIC_FEATURES], dtype=np.uint64
        )
        self._cat_names = [f"{name}=" for name in CATEGORICAL_FEATURES]
        self._cache: dict[str, int] = {}
        self._actions = [
            self._action_example(a.key, a.touchpoint, a.channel) for a in catalog.actions
        ]
        self._action_cores = [ex._example for ex in self._actions]
        self._shared_example = vw.Example()
        self._shared_example.set_label(_SHARED_LABEL)
        self._bind_calls()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.serialize()).hexdigest()[:10]

    def serialize(self) -> bytes:
        return self.workspace.serialize()

    # -- examples ---------------------------------------------------------------------------

    def _index(self, name: str, namespace: str = SHARED_NS) -> int:
        return self.workspace.get_index_for_scalar_feature(name, namespace_name=namespace)

    def _cached(self, name: str) -> int:
        index = self._cache.get(name)
        if index is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            index = self._cache[name] = self._index(name)
        return index

    def _action_example(self, key: str, touchpoint: str, channel: str) -> vw.Example:
        names = [f"a={key}"] + ([f"tp={touchpoint}", f"ch={channel}"] if touchpoint else [])
        ex = vw.Example()
        ex.set_label(vw.CBLabel())
        indices = np.array([self._index(n, ACTION_NS) for n in names], dtype=np.uint64)
        _push(ex, ACTION_NS, indices, np.ones(len(names), dtype=np.float32))
        return ex

    def shared_features(self, features: FeatureBatch) -> SharedFeatures:
        """The shared (customer) features of every row, hashed: the indices and values of all
        rows in two flat arrays, assembled in one pass."""
        n = len(features)
        numeric_index = self._num_index.tolist()
        numeric = features.numeric.tolist()
        categorical = features.categorical.tolist()
        extra_cat = features.extra_categorical
        extra_num = features.extra_numeric
        cached = self._cached
        names = self._cat_names
        indices: list[int] = []
        values: list[float] = []
        bounds = [0]
        for i in range(n):
            row = [cached(p + v) for p, v in zip(names, categorical[i], strict=True) if v]
            if extra_cat is not None:
                row += [cached(f"{EXTRA_PREFIX}{k}={v}") for k, v in extra_cat[i].items()]
            indices += numeric_index
            indices += row
            values += numeric[i]
            values += [1.0] * len(row)
            if extra_num is not None and extra_num[i]:
                indices += [cached(EXTRA_PREFIX + k) for k in extra_num[i]]
                values += list(extra_num[i].values())
            bounds.append(len(indices))
        return SharedFeatures(
            np.array(indices, dtype=np.uint64), np.array(values, dtype=np.float32), bounds
        )

    def _shared(self, shared: SharedFeatures, i: int) -> vw.Example:
        """The one reusable shared example, refilled with row i's features. A VW example takes
        about 28 KB of native memory: one per row of a large batch took a gigabyte that the
        allocator kept, so rows share a single one."""
        ex = self._shared_example
        group: Any = ex[SHARED_NS]
        group.truncate_to(0)
        start, stop = shared.bounds[i], shared.bounds[i + 1]
        _push(ex, SHARED_NS, shared.indices[start:stop], shared.values[start:stop])
        return ex

    # -- predict and learn ------------------------------------------------------------------

    def _bind_calls(self) -> None:
        """Bind predict/learn to the native workspace when the binding exposes it.

        The public predict_one/learn_one re-check every example's label in Python; the native
        calls skip that (about 2x faster). Labels here are always CB labels set by this class.
        """
        core = getattr(self.workspace, "_workspace", None)
        actions, cores = self._actions, self._action_cores
        if core is not None and hasattr(core, "predict_multi_ex_one"):
            predict_native, learn_native = core.predict_multi_ex_one, core.learn_multi_ex_one

            def predict(shared: vw.Example, eligible: Sequence[int]) -> list[tuple[int, float]]:
                return predict_native([shared._example] + [cores[a] for a in eligible])

            def learn(shared: vw.Example, eligible: Sequence[int]) -> None:
                learn_native([shared._example] + [cores[a] for a in eligible])

        else:
            workspace = self.workspace

            def predict(shared: vw.Example, eligible: Sequence[int]) -> list[tuple[int, float]]:
                return workspace.predict_one([shared] + [actions[a] for a in eligible])  # type: ignore[return-value]

            def learn(shared: vw.Example, eligible: Sequence[int]) -> None:
                workspace.learn_one([shared] + [actions[a] for a in eligible])

        self._predict: Callable[[vw.Example, Sequence[int]], list[tuple[int, float]]] = predict
        self._learn: Callable[[vw.Example, Sequence[int]], None] = learn

    def predict(self, features: FeatureBatch, allowed: np.ndarray) -> np.ndarray:
        """(n, A) action probabilities over the allowed actions."""
        probs = np.zeros(allowed.shape)
        rows = np.flatnonzero(allowed.sum(axis=1) > 1)
        probs[allowed.sum(axis=1) == 1] = allowed[allowed.sum(axis=1) == 1]  # only no contact
        if len(rows) == 0:
            return probs
        shared = self.shared_features(features.rows(rows) if len(rows) < len(allowed) else features)
        where, what = np.nonzero(allowed[rows])
        bounds = np.searchsorted(where, np.arange(len(rows) + 1)).tolist()
        columns = what.tolist()
        out_rows: list[int] = []
        out_cols: list[int] = []
        out_probs: list[float] = []
        predict = self._predict
        for j, i in enumerate(rows.tolist()):
            eligible = columns[bounds[j] : bounds[j + 1]]
            for position, p in predict(self._shared(shared, j), eligible):
                out_rows.append(i)
                out_cols.append(eligible[position])
                out_probs.append(p)
        probs[out_rows, out_cols] = out_probs
        # VW returns float32 probabilities; renormalise in float64 so rows sum to 1 exactly.
        probs /= probs.sum(axis=1, keepdims=True)
        return probs

    def learn(
        self,
        features: FeatureBatch,
        allowed: np.ndarray,
        chosen: np.ndarray,
        probability: np.ndarray,
        reward: np.ndarray,
    ) -> int:
        """One update per row: cost = -reward on the chosen action, at its logged probability.
        Rows are applied in order; if row i cannot be applied (the chosen action not eligible,
        or VW fails), PartialUpdate(i) says that rows 0..i-1 were."""
        shared_features = self.shared_features(features)
        for i in range(len(chosen)):
            try:
                eligible = np.flatnonzero(allowed[i]).tolist()
                action = int(chosen[i])
                if not allowed[i, action]:
                    raise ModelError("the chosen action is not among the eligible")
                shared = self._shared(shared_features, i)
                labelled = self._actions[action]
                labelled.set_label(vw.CBLabel(label=(-float(reward[i]), float(probability[i]))))
                try:
                    self._learn(shared, eligible)
                finally:
                    labelled.set_label(vw.CBLabel())
            except Exception as exc:  # whatever failed in row i: rows 0..i-1 are learned
                raise PartialUpdate(i, exc) from exc
        return len(chosen)
