"""Three nodes on loopback (free ports, mTLS) run a real three-party job end to end."""

from __future__ import annotations

import pytest

from node.jobs.initiate import initiate
from node.services import NodeServices
from pcnode.errors import PermissionDenied
from tests.federation import make_federation, serving, wait_until


def _events(services: NodeServices, job_id: str) -> list:
    return [e for e in services.ledger.entries() if e.job_id == job_id]


@pytest.fixture
def fed(tmp_path):
    return make_federation(tmp_path, ["tax", "bank", "operator"])


def test_selftest_three_parties_agree_and_exchange_receipts(fed):
    with serving(fed.homes) as nodes:
        bank = NodeServices(fed.homes["bank"], user="analyst")
        outcome = initiate(bank, "selftest",
                           {"bank": "member", "tax": "member", "operator": "member"},
                           {"length": 50_000})
        assert outcome.summary["check"] == "ok"
        for name in ("tax", "operator"):
            assert wait_until(lambda n=name: any(
                e.event == "receipt.received" for e in _events(nodes[n], outcome.job_id)
            ) and len([e for e in _events(nodes[n], outcome.job_id)
                       if e.event == "receipt.received"]) == 2)
        for name, svc in [("bank", bank), ("tax", nodes["tax"]), ("operator", nodes["operator"])]:
            events = _events(svc, outcome.job_id)
            kinds = [e.event for e in events]
            assert "job.started" in kinds and "job.completed" in kinds, (name, kinds)
            done = next(e for e in events if e.event == "job.completed")
            assert done.transcript_hash == outcome.transcript_hash, name
            assert kinds.count("receipt.received") == 2, (name, kinds)
        assert [e.event for e in _events(nodes["tax"], outcome.job_id)][:2] == [
            "job.requested", "job.allowed"]


def test_unknown_job_kind_is_refused_cleanly(fed):
    with serving({n: fed.homes[n] for n in ("tax", "bank")}):
        bank = NodeServices(fed.homes["bank"])
        with pytest.raises(Exception, match="unknown job kind"):
            initiate(bank, "no-such-kind", {"bank": "member", "tax": "member"}, {})


def test_a_party_not_in_our_peers_is_refused_before_anything_is_sent(fed):
    bank = NodeServices(fed.homes["bank"])
    with pytest.raises(Exception, match="no peer named 'mallory'"):
        initiate(bank, "selftest", {"bank": "member", "mallory": "member"}, {})


def test_permission_denied_names_the_rule(fed):
    from node.jobs.kinds import Authorization, JobKind, JobOutcome, register

    class Guarded(JobKind):
        name = "guarded-test"
        operation = "selftest"
        roles = ("member",)

        def authorize(self, services, spec, role):
            if services.name == "tax":
                raise PermissionDenied("denied by rule 'columns': nope", rule="columns")
            return Authorization()

        def run(self, ctx):
            return JobOutcome()

    register(Guarded())
    with serving({n: fed.homes[n] for n in ("tax", "bank")}) as nodes:
        bank = NodeServices(fed.homes["bank"])
        with pytest.raises(PermissionDenied, match="rule 'columns'"):
            initiate(bank, "guarded-test", {"bank": "member", "tax": "member"}, {})
        denied = [e for e in nodes["tax"].ledger.entries() if e.event == "job.denied"]
        assert denied and denied[-1].extra.get("rule") == "columns"
        failed = [e for e in bank.ledger.entries() if e.event == "job.failed"]
        assert failed and "columns" in failed[-1].error


def test_spec_signature_covers_the_bytes_sent_not_a_reserialisation(fed):
    """An integer timeout (3600) must not break the signature check at the peer (3600.0)."""
    with serving({n: fed.homes[n] for n in ("tax", "bank")}):
        bank = NodeServices(fed.homes["bank"])
        out = initiate(bank, "selftest", {"bank": "member", "tax": "member"}, {"length": 10},
                       timeout=3600)
        assert out.summary["check"] == "ok"
