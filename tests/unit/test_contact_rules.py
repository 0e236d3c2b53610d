"""Each contact rule, its precedence, and the reason it reports."""

from __future__ import annotations

import numpy as np
import pytest

from engine.catalog import Catalog
from engine.contact import ContactPolicy, Rule
from engine.lifecycle import LifecycleDays
from engine.requests import NO_OCCASION
from engine.state import (
    PERMISSION_GRANTED,
    PERMISSION_WITHDRAWN,
    CustomerStates,
)
from tests.conftest import DAY, T0


def state(catalog: Catalog, days_since_first: int | None = 5) -> CustomerStates:
    st = CustomerStates.empty(
        ["c"], np.array([T0]), len(catalog.channels), len(catalog.touchpoints)
    )
    if days_since_first is not None:
        st.known[0] = True
        st.first_purchase_time[0] = T0 - days_since_first * DAY - 3600
        st.purchases[0] = 1
    st.count_days(LifecycleDays())
    return st


def rules(
    catalog: Catalog, st: CustomerStates, occasion: int = NO_OCCASION, candidates=None
) -> dict[str, Rule]:
    result = ContactPolicy(catalog).evaluate(st, np.array([occasion]), candidates)
    assert result.allowed[0, 0], "no contact is always eligible"
    return {key: Rule(int(r)) for key, r in zip(catalog.action_keys, result.rule[0], strict=True)}


def test_default_consent_decides_without_events(catalog: Catalog) -> None:
    r = rules(catalog, state(catalog))
    assert r["reminder@email"] == Rule.NONE
    assert r["cross_sell@postcard"] == Rule.NONE
    assert r["reminder@push"] == Rule.NO_CONSENT
    assert r["voucher@sms"] == Rule.NO_CONSENT
    # Day 5 is also outside the survey's window; consent, a legal rule, is reported first.
    assert r["nps_survey@call"] == Rule.NO_CONSENT
    assert r["nps_survey@email"] == Rule.LIFECYCLE_WINDOW


def test_permission_states(catalog: Catalog) -> None:
    st = state(catalog)
    ch = catalog.channel_index
    st.permission[0, ch["sms"]] = PERMISSION_GRANTED
    st.permission[0, ch["email"]] = PERMISSION_GRANTED
    st.unsubscribed[0, ch["email"]] = True  # an unsubscribe outranks a granted consent
    st.permission[0, ch["postcard"]] = PERMISSION_WITHDRAWN
    r = rules(catalog, st)
    assert r["voucher@sms"] == Rule.NONE
    assert r["reminder@email"] == Rule.UNSUBSCRIBED
    assert r["voucher@postcard"] == Rule.NO_CONSENT


def test_parcel_insert_rides_with_the_first_shipment_only(catalog: Catalog) -> None:
    assert rules(catalog, state(catalog, 0))["welcome@parcel_insert"] == Rule.NONE
    assert rules(catalog, state(catalog, 1))["welcome@parcel_insert"] == Rule.FIRST_SHIPMENT_ONLY
    assert rules(catalog, state(catalog, None))["welcome@parcel_insert"] == Rule.FIRST_SHIPMENT_ONLY
    st = state(catalog, 0)
    st.last_contact_time[0, catalog.channel_index["parcel_insert"]] = T0 - 60
    assert rules(catalog, st)["voucher@parcel_insert"] == Rule.FIRST_SHIPMENT_ONLY  # one insert


def test_lifecycle_windows_and_unknown_customers(catalog: Catalog) -> None:
    assert rules(catalog, state(catalog, 14))["welcome@email"] == Rule.NONE
    assert rules(catalog, state(catalog, 15))["welcome@email"] == Rule.LIFECYCLE_WINDOW
    assert rules(catalog, state(catalog, 6))["nps_survey@email"] == Rule.LIFECYCLE_WINDOW
    assert rules(catalog, state(catalog, 7))["nps_survey@email"] == Rule.NONE
    unknown = rules(catalog, state(catalog, None))
    assert unknown["welcome@email"] == Rule.LIFECYCLE_WINDOW
    # Every touchpoint counts its days from the first purchase, open-ended ones too.
    assert unknown["reminder@email"] == Rule.LIFECYCLE_WINDOW
    assert unknown["cross_sell@postcard"] == Rule.LIFECYCLE_WINDOW


@pytest.mark.parametrize(
    ("days", "rule"),
    [
        (NO_OCCASION, Rule.OCCASION_NOT_DUE),
        (0, Rule.NONE),
        (3, Rule.NONE),
        (4, Rule.OCCASION_NOT_DUE),
    ],
)
def test_occasion_must_be_due(catalog: Catalog, days: int, rule: Rule) -> None:
    assert rules(catalog, state(catalog), occasion=days)["occasion@email"] == rule


def test_touchpoint_limit(catalog: Catalog) -> None:
    st = state(catalog, 30)
    st.touchpoint_sent[0, catalog.touchpoint_index["nps_survey"]] = 1
    assert rules(catalog, st)["nps_survey@email"] == Rule.TOUCHPOINT_LIMIT


def test_frequency_rules_in_order(catalog: Catalog) -> None:
    ch = catalog.channel_index["email"]
    st = state(catalog, 30)
    st.last_contact_time[0, ch] = T0 - 3600  # an hour ago: inside the 1-day gap
    st.contacts_7d[0, ch] = 2
    st.contacts_30d[0, ch] = 6
    assert rules(catalog, st)["reminder@email"] == Rule.MIN_GAP
    st.last_contact_time[0, ch] = T0 - 2 * DAY
    assert rules(catalog, st)["reminder@email"] == Rule.CHANNEL_CAP_7D
    st.contacts_7d[0, ch] = 1
    assert rules(catalog, st)["reminder@email"] == Rule.CHANNEL_CAP_30D
    st.contacts_30d[0, ch] = 1
    assert rules(catalog, st)["reminder@email"] == Rule.NONE
    st.contacts_7d[0, catalog.channel_index["postcard"]] = 2  # 3 over all channels: global cap
    r = rules(catalog, st)
    assert r["reminder@email"] == Rule.CAP_7D
    assert r["voucher@postcard"] == Rule.CAP_7D


def test_candidates_restrict_without_being_reported(catalog: Catalog) -> None:
    mask = np.zeros((1, catalog.n_actions), dtype=bool)
    mask[0, catalog.action_index("reminder", "email")] = True
    result = rules(catalog, state(catalog), candidates=mask)
    assert result["reminder@email"] == Rule.NONE
    assert result["voucher@email"] == Rule.NOT_CANDIDATE


def test_every_rule_has_a_readable_reason(catalog: Catalog) -> None:
    policy = ContactPolicy(catalog)
    email = catalog.action_index("reminder", "email")
    texts = {
        rule: policy.describe(rule, email)
        for rule in Rule
        if rule not in (Rule.NONE, Rule.NOT_CANDIDATE)
    }
    assert texts[Rule.CHANNEL_CAP_7D] == "email: cap of 2 contacts in 7 days reached"
    assert texts[Rule.CAP_30D] == "cap of 8 contacts in 30 days reached"
    assert texts[Rule.MIN_GAP] == "email: less than 1 days since its last contact"
    assert texts[Rule.LIFECYCLE_WINDOW] == "reminder: only on days 0.. after the first purchase"
    assert (
        policy.describe(Rule.LIFECYCLE_WINDOW, email, known=False)
        == "reminder: no first purchase known (only on days 0.. after it)"
    )
    assert all(text and not text.isupper() for text in texts.values())
