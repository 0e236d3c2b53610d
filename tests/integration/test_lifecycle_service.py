"""Over the wire: a customer with no known first purchase gets no touchpoint, and GetCatalog
says how lifecycle days are counted."""

from __future__ import annotations

from engine.requests import EventType
from engine.server._generated.anstoss.v1 import decision_pb2 as pb
from engine.server.app import RunningServer
from engine.server.client import DecisionClient, timestamp
from tests.conftest import T0


def _removed(decision: pb.Decision) -> dict[tuple[str, str], pb.RemovedAction]:
    return {(r.action.touchpoint, r.action.channel): r for r in decision.removed}


def test_an_unknown_customer_gets_no_touchpoint_until_her_first_purchase(
    client: DecisionClient, server: RunningServer
) -> None:
    catalog = server.engine.catalog
    # Opt-ins for every channel that needs one, so consent is not what removes the actions.
    for channel in ("push", "sms", "call"):
        client.event("newcomer", T0 - 60, EventType.CONSENT_GRANTED, channel=channel)
    before = client.decide("newcomer", T0)
    assert not before.customer_known
    assert before.no_contact
    assert [(e.action.touchpoint, e.action.channel) for e in before.eligible] == [("", "")]
    removed = _removed(before)
    assert set(removed) == {(a.touchpoint, a.channel) for a in catalog.actions[1:]}
    for (touchpoint, channel), r in removed.items():
        # The parcel insert's own rule comes first in the documented order.
        expected = (
            pb.ELIGIBILITY_RULE_FIRST_SHIPMENT_ONLY
            if channel == "parcel_insert"
            else pb.ELIGIBILITY_RULE_LIFECYCLE_WINDOW
        )
        assert r.rule == expected, (touchpoint, channel)
    windowed = {
        tp for (tp, _), r in removed.items() if r.rule == pb.ELIGIBILITY_RULE_LIFECYCLE_WINDOW
    }
    assert windowed == {t.name for t in catalog.touchpoints}  # every one is bound to the purchase
    assert removed[("reminder", "email")].detail == (
        "reminder: no first purchase known (only on days 0.. after it)"
    )
    assert client.get_decision(before.decision_id).decision == before  # as logged

    client.event("newcomer", T0 + 60, EventType.PURCHASE, value=30.0, event_id="order-1")
    after = client.decide("newcomer", T0 + 120)
    assert after.customer_known
    assert ("reminder", "email") in {
        (e.action.touchpoint, e.action.channel) for e in after.eligible
    }
    assert _removed(after)[("nps_survey", "email")].detail == (
        "nps_survey: only on days 7.. after the first purchase"
    )
    assert client.get_decision(after.decision_id).decision == after


def test_a_stream_batch_says_per_customer_whether_she_is_known(client: DecisionClient) -> None:
    client.event("known", T0 - 3600, EventType.PURCHASE, value=30.0, event_id="order-k")
    requests = [
        pb.DecideRequest(customer_id=c, time=timestamp(T0)) for c in ("known", "stranger", "known2")
    ]
    (reply,) = list(client.decide_stream([requests]))
    assert [r.decision.customer_known for r in reply.results] == [True, False, False]
    stranger = _removed(reply.results[1].decision)
    assert stranger[("cross_sell", "email")].rule == pb.ELIGIBILITY_RULE_LIFECYCLE_WINDOW


def test_get_catalog_says_how_lifecycle_days_are_counted(client: DecisionClient) -> None:
    reply = client.catalog()
    assert reply.chain_catch_up_days == 7
    assert reply.time.zone == "Europe/Berlin"
    assert reply.time.lifecycle_days == "calendar"
