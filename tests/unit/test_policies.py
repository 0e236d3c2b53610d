"""Policies: the fixed chain, random, no contact, the VW bandit; seeded sampling; arms."""

from __future__ import annotations

import numpy as np
import pytest
import vowpal_wabbit_next as vw

from engine.catalog import Catalog
from engine.config import BanditConfig, EngineConfig
from engine.decide import _sample
from engine.experiment import Arm, Experiment
from engine.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, FeatureBatch
from engine.hashing import decision_draws, string_keys
from engine.policy import BanditPolicy, ChainPolicy, NoContactPolicy, RandomPolicy
from engine.policy.vw import VWModel
from engine.requests import EventType
from tests.conftest import DAY, T0, EngineFactory, channel_events, decide_batch, purchases


def test_chain_follows_the_schedule_over_the_first_eligible_channel(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine("chain")
    cat = engine.catalog
    engine.report_events(purchases(["a", "b"], [T0, T0], [40.0, 40.0]))
    engine.report_events(channel_events(cat, ["a"], [T0], EventType.CONSENT_GRANTED, ["push"]))

    def action(customer: str, day: int) -> str:
        d = engine.decide(decide_batch([customer], T0 + day * DAY + 60))
        assert d.probability[0] == 1.0  # deterministic
        return cat.action_keys[d.chosen[0]]

    assert action("a", 0) == "welcome@parcel_insert"
    assert action("a", 1) == "welcome@email"
    assert action("a", 2) == "no_contact"  # no step due on day 2
    assert action("a", 3) == "cross_sell@email"
    assert action("a", 7) == "no_contact"  # e-mail cap: the day-1 and day-3 mails
    assert action("a", 8) == "voucher@email"  # caught up once the day-1 mail left the week
    assert action("a", 14) == "reminder@push"  # push consented: first preference
    assert action("b", 14) == "voucher@email"  # the day-7 step, caught up on its last day
    assert action("b", 15) == "reminder@email"  # no push consent: falls back to e-mail
    engine.report_events(
        channel_events(cat, ["b"], [T0 + 20 * DAY], EventType.UNSUBSCRIBED, ["email"])
    )
    assert action("b", 21) == "no_contact"  # the step's only channel is gone
    assert action("stranger", 0) == "no_contact"  # no first purchase known: no chain


def test_random_is_uniform_over_eligible_and_none_never_contacts(catalog: Catalog) -> None:
    allowed = np.array([[True, True, False, True], [True, False, False, False]])
    probs = RandomPolicy().probabilities(None, None, allowed)  # type: ignore[arg-type]
    np.testing.assert_allclose(probs, [[1 / 3, 1 / 3, 0, 1 / 3], [1, 0, 0, 0]])
    none = NoContactPolicy().probabilities(None, None, allowed)  # type: ignore[arg-type]
    np.testing.assert_array_equal(none, [[1, 0, 0, 0], [1, 0, 0, 0]])
    assert ChainPolicy(catalog).spans[-1] == ("voucher", 360, 367)  # nothing due after it


def _features(n: int, rng: np.random.Generator) -> FeatureBatch:
    categorical = np.full((n, len(CATEGORICAL_FEATURES)), "", dtype=object)
    categorical[:, 2] = rng.choice(["web", "app"], n)
    return FeatureBatch(
        rng.random((n, len(NUMERIC_FEATURES))), categorical, [{"age": 30.0}] * n, [{"seg": "x"}] * n
    )


def test_prehashed_examples_equal_vw_text_parsing(catalog: Catalog) -> None:
    """The adapter's pre-hashed examples are what VW's own parser makes of the text form."""
    model = VWModel(BanditConfig(), catalog)
    rng = np.random.default_rng(3)
    features = _features(1, rng)
    allowed = np.ones((1, catalog.n_actions), dtype=bool)
    parser = vw.TextFormatParser(model.workspace)
    num = " ".join(
        f"{n}:{v!r}" for n, v in zip(NUMERIC_FEATURES, features.numeric[0].tolist(), strict=True)
    )
    cats = " ".join(
        f"{n}={v}" for n, v in zip(CATEGORICAL_FEATURES, features.categorical[0], strict=True) if v
    )
    shared = f"shared |U {num} {cats} extra.seg=x extra.age:30.0"
    actions = [
        f"|A a={a.key}" + (f" tp={a.touchpoint} ch={a.channel}" if a.is_contact else "")
        for a in catalog.actions
    ]
    rewarded = catalog.action_index("voucher", "email")
    for step in range(30):  # learn through text examples so the weights are not all zero
        examples = [parser.parse_line(shared)] + [parser.parse_line(a) for a in actions]
        chosen = step % catalog.n_actions
        examples[1 + chosen].set_label(vw.CBLabel(label=(-1.0 if chosen == rewarded else 0.0, 0.5)))
        model.workspace.learn_one(examples)
    text_pmf = model.workspace.predict_one(
        [parser.parse_line(shared)] + [parser.parse_line(a) for a in actions]
    )
    ours = model.predict(features, allowed)[0]
    for index, p in text_pmf:  # type: ignore[union-attr]
        assert ours[index] == pytest.approx(p, rel=1e-6)
    assert ours.argmax() == rewarded


def test_bandit_learns_which_action_pays_per_context(catalog: Catalog) -> None:
    """Two contexts, two best actions: after learning from logged exploration the greedy action
    differs by context as the rewards say."""
    policy = BanditPolicy(BanditConfig(epsilon=0.2), catalog)
    rng = np.random.default_rng(0)
    n = 3000
    features = _features(n, rng)
    web = features.categorical[:, 2] == "web"
    allowed = np.zeros((n, catalog.n_actions), dtype=bool)
    email, postcard = (
        catalog.action_index("voucher", "email"),
        catalog.action_index("voucher", "postcard"),
    )
    allowed[:, [0, email, postcard]] = True
    chosen = rng.choice([0, email, postcard], n)
    best = np.where(web, email, postcard)
    reward = np.where(chosen == best, 5.0, 0.0) + rng.normal(0, 1, n)
    from engine.decisions import ClosedDecisions

    closed = ClosedDecisions(
        np.arange(n),
        np.arange(n),
        ["bandit"] * n,
        features,
        allowed,
        chosen,
        np.full(n, 1 / 3),
        reward,
    )
    assert policy.learn(closed) == n
    assert policy.version == f"init+{n}"
    probs = policy.probabilities(features, None, allowed)  # type: ignore[arg-type]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.all(probs[~allowed] == 0)
    greedy = probs.argmax(axis=1)
    assert (greedy == best).mean() > 0.95
    assert probs.max(axis=1).min() == pytest.approx(1 - 0.2 + 0.2 / 3, rel=1e-5)


def test_sampling_is_seeded_and_follows_the_probabilities() -> None:
    keys = string_keys([f"c{i}" for i in range(20000)])
    times = np.full(20000, T0)
    draws = decision_draws(keys, times, seed=7)
    np.testing.assert_array_equal(draws, decision_draws(keys, times, seed=7))
    assert not np.array_equal(draws, decision_draws(keys, times, seed=8))
    probs = np.tile([0.5, 0.0, 0.3, 0.2], (20000, 1))
    chosen = _sample(probs, draws)
    shares = np.bincount(chosen, minlength=4) / 20000
    tolerance = 4 * np.sqrt(0.25 / 20000)
    np.testing.assert_allclose(shares, [0.5, 0.0, 0.3, 0.2], atol=tolerance)
    assert shares[1] == 0  # probability 0 is never drawn
    assert _sample(np.array([[0.0, 1.0]]), np.array([0.9999999999])).tolist() == [1]


def test_arms_are_stable_and_split_by_share() -> None:
    experiment = Experiment("e", "salt", (Arm("a", "chain", 0.2), Arm("b", "bandit", 0.8)))
    ids = [f"customer-{i}" for i in range(50000)]
    arms = experiment.assign(string_keys(ids))
    np.testing.assert_array_equal(arms, experiment.assign(string_keys(ids)))
    share = (arms == 0).mean()
    assert abs(share - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 50000)
    resalted = Experiment("e", "other", experiment.arms).assign(string_keys(ids))
    assert 0.6 < (resalted == arms).mean() < 0.75  # a new salt reshuffles (independent: 0.68)


def test_same_seed_same_decisions_and_other_seed_others(
    make_engine: EngineFactory, config: EngineConfig
) -> None:
    runs = []
    for i, seed in enumerate([1, 1, 2]):
        engine = make_engine("random", name=f"s{i}.db", seed=seed)
        engine.report_events(purchases([f"c{k}" for k in range(200)], [T0] * 200, [30.0] * 200))
        runs.append(
            engine.decide(decide_batch([f"c{k}" for k in range(200)], T0 + DAY)).chosen.tolist()
        )
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
