"""Tests of simulator.btyd: closed forms against brute-force integration, the fit against a
reference generator of the discrete-day model, and input validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from simulator import btyd

TRUTH = {
    "r": 0.9,
    "alpha": 60.0,
    "s": 0.8,
    "beta": 400.0,
    "burst_probability": 0.5,
    "burst_tau": 3.0,
    "spend_p": 6.25,
    "spend_q": 3.74,
    "spend_gamma": 26.3,
}
TRUTH["burst_kappa"] = btyd.burst_kappa_from_probability(0.5, 3.0)


def simulate_log(
    rng: np.random.Generator, t_cal: np.ndarray, truth: dict[str, float] = TRUTH
) -> pd.DataFrame:
    """Reference generator of the discrete-day model: one row per purchase, day 0 included."""
    n = t_cal.size
    lam = rng.gamma(truth["r"], 1.0 / truth["alpha"], n)
    mu = rng.gamma(truth["s"], 1.0 / truth["beta"], n)
    nu = rng.gamma(truth["spend_q"], 1.0 / truth["spend_gamma"], n)
    last_alive_day = np.floor(rng.exponential(1.0, n) / mu)  # dies at the end of this day
    days = np.arange(1, int(t_cal.max()) + 1)
    burst = np.where(
        days <= 14, truth["burst_kappa"] * np.exp(-(days - 1) / truth["burst_tau"]), 0.0
    )
    buys = rng.random((n, days.size)) < -np.expm1(-(lam[:, None] + burst))
    buys &= (days <= last_alive_day[:, None]) & (days <= t_cal[:, None])
    customer, column = np.nonzero(buys)
    customer_id = np.concatenate([np.arange(n), customer])
    amount = rng.gamma(truth["spend_p"], 1.0 / nu[customer_id])
    day = np.concatenate([np.zeros(n, dtype=int), days[column]])
    return pd.DataFrame({"customer_id": customer_id, "day": day, "amount": amount})


# --------------------------------------------------------------------------- brute force
def _log_grid_expectation(f, r: float, alpha: float, s: float, beta: float) -> float:
    """log E[f(lambda, mu)] over the gamma mixtures, by the trapezoid rule in log-coordinates."""
    u = np.linspace(-60.0, 6.0, 2500)
    lam, mu = np.exp(u)[:, None], np.exp(u)[None, :]
    w_lam = np.exp(stats.gamma.logpdf(lam, r, scale=1 / alpha) + np.log(lam))
    w_mu = np.exp(stats.gamma.logpdf(mu, s, scale=1 / beta) + np.log(mu))
    return float(np.log(np.sum(f(lam, mu) * w_lam * w_mu) * (u[1] - u[0]) ** 2))


def _continuous_individual(x: int, t_x: float, t_cal: float, c: float = 0.0):
    """Pareto/NBD individual likelihood of purchases in (c, t_cal], given alive or not at c."""

    def f(lam, mu):
        k, log_front = lam + mu, x * np.log(lam) - mu * c  # exponents first: lambda^200 overflows
        stays, leaves = np.exp(log_front - k * (t_cal - c)), np.exp(log_front - k * (t_x - c))
        dead_before = -np.expm1(-mu * c) if x == 0 else 0.0
        return stays + mu / k * (leaves - stays) + dead_before

    return f


def _discrete_individual(x: int, t_x: int, t_cal: int, c: int = 14):
    """Exact discrete-day likelihood of x purchases on days c+1..T, the last on t_x."""

    def f(lam, mu):
        k = lam + mu
        if x == 0:  # dead by the end of day c, or no purchase on days c+1..death or t_cal
            deaths = (
                np.exp(-k * (c + 1) + lam * c) * -np.expm1(-k * (t_cal - c - 1)) / -np.expm1(-k)
            )
            return (
                -np.expm1(-mu * (c + 1))
                - np.expm1(-mu) * deaths
                + np.exp(-mu * t_cal - lam * (t_cal - c))
            )
        buys = (-np.expm1(-lam)) ** x * np.exp(-lam * (t_x - c - x))
        deaths = np.exp(-mu * t_x) * -np.expm1(-k * (t_cal - t_x)) / -np.expm1(-k)
        return buys * (-np.expm1(-mu) * deaths + np.exp(-mu * t_cal - lam * (t_cal - t_x)))

    return f


CASES = [(0, 0.0, 100.0), (2, 30.0, 200.0), (15, 150.0, 200.0), (60, 250.0, 260.0), (5, 90.0, 90.0)]
PARAMS = [(0.9, 60.0, 0.8, 400.0), (2.0, 500.0, 0.5, 30.0)]  # alpha < beta and alpha > beta


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize(("x", "t_x", "t_cal"), CASES)
def test_pareto_nbd_matches_brute_force(params, x, t_x, t_cal):
    closed = btyd.pareto_nbd_log_likelihood(*params, x, t_x, t_cal)
    brute = _log_grid_expectation(_continuous_individual(x, t_x, t_cal), *params)
    assert closed == pytest.approx(brute, abs=1e-6)


@pytest.mark.parametrize("params", [(0.9, 60.0, 0.8, 3e4), (300.0, 375.0, 2.0, 1e5)])
def test_pareto_nbd_beyond_scipy_hyp2f1_range(params):
    """200 purchases and a hypergeometric argument near 1: scipy's hyp2f1 overflows there."""
    closed = btyd.pareto_nbd_log_likelihood(*params, 200, 255.0, 260.0)
    brute = _log_grid_expectation(_continuous_individual(200, 255.0, 260.0), *params)
    assert closed == pytest.approx(brute, abs=1e-6)


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize(
    ("x", "t_x", "t_cal"), [(0, 14.0, 100.0), (3, 40.0, 200.0), (40, 250.0, 260.0)]
)
def test_truncated_pareto_nbd_matches_brute_force(params, x, t_x, t_cal):
    closed = btyd.truncated_pareto_nbd_log_likelihood(*params, x, t_x, t_cal, truncation=14.0)
    brute = _log_grid_expectation(_continuous_individual(x, t_x, t_cal, c=14.0), *params)
    assert closed == pytest.approx(brute, abs=1e-6)


def test_truncation_zero_is_the_plain_pareto_nbd():
    x, t_x, t_cal = np.array([0, 1, 7]), np.array([0.0, 3.0, 50.0]), np.array([20.0, 30.0, 90.0])
    plain = btyd.pareto_nbd_log_likelihood(1.2, 40.0, 0.7, 90.0, x, t_x, t_cal)
    zero = btyd.truncated_pareto_nbd_log_likelihood(1.2, 40.0, 0.7, 90.0, x, t_x, t_cal, 0.0)
    np.testing.assert_allclose(zero, plain, rtol=1e-12)


@pytest.mark.parametrize(
    ("x", "t_x", "t_cal"), [(0, 14, 100), (1, 20, 200), (3, 100, 200), (8, 150, 260)]
)
def test_daily_likelihood_is_close_to_exact_discrete_model(x, t_x, t_cal):
    params = PARAMS[0]
    exact = _log_grid_expectation(_discrete_individual(x, t_x, t_cal), *params)
    daily = btyd.truncated_pareto_nbd_log_likelihood(*params, x, t_x, t_cal, 14.0, daily=True)
    continuous = btyd.truncated_pareto_nbd_log_likelihood(*params, x, t_x, t_cal, 14.0)
    assert daily == pytest.approx(exact, abs=2e-3)
    assert abs(daily - exact) < abs(continuous - exact) / 10


# --------------------------------------------------------------------------- burst
def test_kappa_and_burst_probability_round_trip():
    for tau in (0.5, 3.0, 20.0):
        kappa = btyd.burst_kappa_from_probability(0.37, tau)
        assert btyd.burst_probability_from_kappa(kappa, tau) == pytest.approx(0.37, rel=1e-12)
    with pytest.raises(ValueError, match="burst probability"):
        btyd.burst_kappa_from_probability(1.0, 3.0)


def test_first_repeat_law_matches_gauss_laguerre_quadrature():
    r, alpha, s, beta, kappa, tau = 0.9, 60.0, 0.8, 400.0, TRUTH["burst_kappa"], 3.0
    log_p, _ = btyd.first_repeat_log_probabilities(kappa, tau, r, alpha, s, beta, window=30)
    u_l, w_l = special.roots_genlaguerre(40, r - 1.0)
    u_m, w_m = special.roots_genlaguerre(40, s - 1.0)
    lam, mu = (u_l / alpha)[:, None, None], (u_m / beta)[None, :, None]
    k = np.arange(1, 31)
    h = btyd.burst_intensity(kappa, tau, k)
    h_before = np.concatenate([[0.0], np.cumsum(h)[:-1]])
    conditional = np.exp(-mu * k - lam * (k - 1) - h_before) * -np.expm1(-lam - h)
    weights = (w_l[:, None, None] * w_m[None, :, None]) / (special.gamma(r) * special.gamma(s))
    np.testing.assert_allclose(np.exp(log_p), (weights * conditional).sum(axis=(0, 1)), rtol=1e-8)


def test_first_repeat_law_matches_monte_carlo():
    n, window = 200_000, 30
    log = simulate_log(np.random.default_rng(11), np.full(n, window))
    repeats = log[log["day"] > 0].groupby("customer_id")["day"].min()
    observed = np.bincount(repeats.to_numpy(), minlength=window + 1)
    observed[0] = n - repeats.size
    log_p, log_surv = btyd.first_repeat_log_probabilities(
        TRUTH["burst_kappa"], 3.0, 0.9, 60.0, 0.8, 400.0, window
    )
    expected = np.concatenate([[np.exp(log_surv[window])], np.exp(log_p)])
    sd = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(observed - n * expected) < 4.5 * sd)


# --------------------------------------------------------------------------- spend
def test_gamma_gamma_density_integrates_to_one():
    for x in (1, 4):
        total, _ = integrate.quad(
            lambda m, x=x: np.exp(btyd.gamma_gamma_log_likelihood(6.25, 3.74, 26.3, x, m)),
            0,
            np.inf,
        )
        assert total == pytest.approx(1.0, abs=1e-8)


def test_gamma_gamma_recovers_parameters():
    rng = np.random.default_rng(5)
    p, q, gamma = 6.25, 3.74, 26.3
    x = rng.integers(1, 8, 8000)
    nu = rng.gamma(q, 1 / gamma, x.size)
    m_x = rng.gamma(p * x, 1 / nu) / x  # mean of x Gamma(p, nu) values
    fit = btyd.fit_spend(x, m_x)
    for name, true in (("p", p), ("q", q), ("gamma", gamma)):
        assert abs(getattr(fit, name) - true) < 4 * fit.standard_errors[name], name
    assert fit.mean_order_value == pytest.approx(fit.p * fit.gamma / (fit.q - 1))


# --------------------------------------------------------------------------- full fit
@pytest.fixture(scope="module")
def calibration_log() -> tuple[pd.DataFrame, pd.Series]:
    """25,000 customers, first purchases over 12 weeks, calibration end at week 39."""
    rng = np.random.default_rng(20260301)
    n = 25_000
    t_cal = 39 * 7 - rng.integers(0, 12 * 7, n)
    return simulate_log(rng, t_cal), pd.Series(t_cal.astype(float), index=np.arange(n))


@pytest.fixture(scope="module")
def recovered(calibration_log) -> btyd.PurchaseModelFit:
    return btyd.fit_purchase_model(*calibration_log)


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_fit_recovers_parameters(recovered, name):
    """Within 4 standard errors on the log scale, where the fit is made (the likelihood of the
    weakly identified s and beta is far from quadratic on the natural scale)."""
    estimate, se = getattr(recovered, name), recovered.standard_errors[name]
    log_se = se / estimate  # delta method: SE of log(estimate)
    assert 0 < log_se < 0.6
    assert abs(np.log(estimate / TRUTH[name])) < 4 * log_se


def test_core_truth_is_inside_the_likelihood_ratio_region(calibration_log, recovered):
    """Joint check of (r, alpha, s, beta): 2 (max LL - LL(truth)) ~ chi2(4), calibrated where
    the Wald intervals of s and beta are not (their likelihood is skewed even in logs)."""
    summary = btyd.summarize_transactions(*calibration_log)
    at_truth = btyd.truncated_pareto_nbd_log_likelihood(
        *(TRUTH[k] for k in ("r", "alpha", "s", "beta")),
        summary.x_core,
        summary.t_x_core,
        summary.t_cal,
        daily=True,
    ).sum()
    statistic = 2 * (recovered.core_log_likelihood - at_truth)
    assert -1e-6 < statistic < stats.chi2.ppf(1 - 1e-4, df=4)


def test_fit_reports_consistent_summary(recovered):
    assert recovered.n_customers == 25_000
    assert recovered.burst_probability == pytest.approx(
        btyd.burst_probability_from_kappa(recovered.burst_kappa, recovered.burst_tau)
    )
    expected_mean = recovered.spend_p * recovered.spend_gamma / (recovered.spend_q - 1)
    assert recovered.mean_order_value == pytest.approx(expected_mean)
    assert max(recovered.core_log_likelihood, recovered.burst_log_likelihood) < 0


def test_summary_of_a_small_log():
    log = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c", "c"],
            "day": [0, 3, 20, 31, 0, 0, 40],
            "amount": [10.0, 20.0, 30.0, 40.0, 5.0, 7.0, 9.0],
        }
    )
    summary = btyd.summarize_transactions(log, pd.Series({"a": 60.0, "b": 12.0, "c": 45.0}))
    np.testing.assert_array_equal(summary.x_core, [2, 0, 1])
    np.testing.assert_array_equal(summary.t_x_core, [31, 14, 40])
    np.testing.assert_array_equal(summary.first_repeat_day, [3, 0, 0])
    np.testing.assert_array_equal(summary.censor_day, [30, 12, 30])
    np.testing.assert_array_equal(summary.n_repeat, [3, 0, 1])
    np.testing.assert_allclose(summary.mean_repeat_amount, [30.0, np.nan, 9.0])


# --------------------------------------------------------------------------- validation
def _log(**changes) -> pd.DataFrame:
    data = {"customer_id": [1, 1, 2], "day": [0, 5, 0], "amount": [10.0, 12.0, 8.0]}
    return pd.DataFrame(data | changes)


T_CAL_OK = pd.Series({1: 30.0, 2: 30.0})


@pytest.mark.parametrize(
    ("transactions", "t_cal", "message"),
    [
        (_log().iloc[:0], T_CAL_OK, "empty"),
        (_log().drop(columns="amount"), T_CAL_OK, "lacks column"),
        (_log(amount=[10.0, -1.0, 8.0]), T_CAL_OK, "negative amounts"),
        (_log(amount=[10.0, np.nan, 8.0]), T_CAL_OK, "missing values"),
        (_log(day=[0, 5, 3]), T_CAL_OK, "no day-0 purchase"),
        (_log(day=[0, 0, 0]), T_CAL_OK, "more than one transaction"),
        (_log(day=[0, 2.5, 0]), T_CAL_OK, "non-negative integer"),
        (_log(day=[0, -5, 0]), T_CAL_OK, "non-negative integer"),
        (_log(), pd.Series({1: 30.0}), "exactly one entry per customer"),
        (_log(), pd.Series({1: 30.0, 2: 30.0, 3: 30.0}), "exactly one entry per customer"),
        (_log(), pd.Series({1: 3.0, 2: 30.0}), "after their customer's calibration end"),
        (_log(), pd.Series({1: 30.0, 2: -1.0}), "finite and non-negative"),
        (_log().to_dict(), T_CAL_OK, "must be a DataFrame"),
    ],
)
def test_invalid_input_is_rejected(transactions, t_cal, message):
    with pytest.raises(ValueError, match=message):
        btyd.fit_purchase_model(transactions, t_cal)


def test_truncation_shorter_than_burst_is_rejected():
    with pytest.raises(ValueError, match="truncation must be >= burst_days"):
        btyd.fit_purchase_model(_log(), T_CAL_OK, truncation=7)


def test_parameter_on_search_bound_gets_nan_standard_error():
    """The likelihood ridge can push a gamma shape to its bound: it is then reported as fixed."""
    n = 100

    def log_lik(theta: np.ndarray) -> float:
        return -n * ((theta[0] - 1.0) ** 2 + (theta[1] - 20.0) ** 2) / 2

    theta, _, cov = btyd._maximize(log_lik, [[0.0, 0.0]], n)
    assert theta == pytest.approx([1.0, 12.0], abs=1e-5)  # 12: the log-parameter bound
    se = btyd._delta_se(np.exp, theta, cov)
    assert se[0] == pytest.approx(np.e / np.sqrt(n), rel=1e-3)
    assert np.isnan(se[1])


def test_zero_value_orders_count_as_purchases_but_not_as_spend():
    log = pd.DataFrame(
        {"customer_id": [1, 1, 1, 2], "day": [0, 5, 9, 0], "amount": [10.0, 0.0, 8.0, 7.0]}
    )
    summary = btyd.summarize_transactions(log, T_CAL_OK)
    assert summary.n_repeat.sum() == 2
    assert summary.n_paid_repeat.sum() == 1
    assert np.nanmax(summary.mean_repeat_amount) == 8.0
