"""A simulation's world ends with it: nothing virtual leaks into the rest of the process, nothing leaves the machine."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from release_train.adapters.clock import Clock
from release_train.domain.errors import InvalidInput
from tests.sandbox.harness import sandbox
from trainctl.sandbox import emulators, network, vtime
from trainctl.sandbox.runner import simulate
from trainctl.sandbox.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]


def test_given_a_finished_simulation_then_real_time_and_plain_moto_are_back_and_no_thread_is_left() -> None:
    before = {t.ident for t in threading.enumerate()}
    result = simulate(ROOT / "fleet.yaml", Scenario(name="quiet week", changed=[]), ROOT)

    assert result.status == "NOTHING_TO_RELEASE"
    assert vtime.active() is None
    assert emulators.active() is None
    assert abs(Clock().now() - datetime.now(UTC)) < timedelta(minutes=1)  # not the scenario's virtual Monday
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert [t.name for t in left if isinstance(t, vtime.VThread)] == []


def test_given_a_sandbox_when_anything_connects_to_a_real_host_then_it_is_refused(tmp_path: Path) -> None:
    with sandbox(tmp_path):
        with pytest.raises(network.SandboxEscape, match=r"lambda\.us-east-1\.amazonaws\.com"):
            socket.getaddrinfo("lambda.us-east-1.amazonaws.com", 443)
        with pytest.raises(network.SandboxEscape):
            socket.create_connection(("192.0.2.10", 443), timeout=1)  # TEST-NET-1, by address
        with socket.create_server(("127.0.0.1", 0)) as server:  # loopback stays allowed
            socket.create_connection(server.getsockname(), timeout=30).close()


def test_given_a_request_no_emulator_answers_when_sent_then_the_sandbox_refuses_it_naming_the_url(
    tmp_path: Path,
) -> None:
    with sandbox(tmp_path):
        # moto answers every *.amazonaws.com URL (with 'Not yet implemented' when it must); an endpoint elsewhere
        # (AWS_ENDPOINT_URL left in a shell, a VPC endpoint name) reaches botocore's sender, which refuses it.
        client = boto3.client("lambda", endpoint_url="https://vpce-0123.lambda.example.com")
        with pytest.raises(network.SandboxEscape, match=r"vpce-0123\.lambda\.example\.com"):
            client.list_functions()


def test_given_a_sandbox_thread_outliving_its_simulation_then_it_still_cannot_leave_the_machine() -> None:
    network.install()
    outcome: list[BaseException] = []
    release = threading.Event()
    clock = vtime.Scheduler(datetime(2026, 11, 23, tzinfo=UTC))
    vtime.activate(clock)
    try:

        def straggler() -> None:
            release.wait()  # a real wait: it outlives its simulation on purpose
            try:
                socket.getaddrinfo("lambda.us-east-1.amazonaws.com", 443)
            except BaseException as exc:
                outcome.append(exc)

        thread = vtime.VThread(target=straggler, name="straggler")
        thread.start()
    finally:
        vtime.activate(None)
        clock.close()
    release.set()  # the simulation is over: nothing is sealed any more, but this thread was a participant
    thread.join()
    assert [type(e) for e in outcome] == [network.SandboxEscape]


def test_given_a_scenario_naming_what_the_fleet_does_not_have_then_it_is_refused_before_anything_runs() -> None:
    scenario = Scenario.model_validate(
        {
            "changed": ["orders", "ordres"],
            "builds": {"prd": {"*": {"outcome": "FAILED"}}, "prod": {"paymnts": {"outcome": "FAILED"}}},
            "tests": {"prod": {"failed": 1}, "qa": {"failed": 1}},
            "approvals": {"production": {"decision": "approve"}},
            "hooks": {"identity": {"pre_traffic": "fail"}, "svc-orders-prod-apl": {"pre_traffic": "fail"}},
            "alarms": [{"name": "x", "stage": "prod", "during": "canary", "service": "catalog"}],
            "operator": [{"action": "cancel", "at_state": "Baking", "stage": "prod"}],
            "lambdas": {"FinaliseRelease": {"duration": "PT1M"}},
        }
    )
    with pytest.raises(InvalidInput) as refused:
        simulate(ROOT / "fleet.yaml", scenario, ROOT, scenario_source="my-scenario.yaml")
    text = str(refused.value)
    for wrong in (
        "changed: unknown service 'ordres'",
        "builds.prd: unknown stage 'prd'",
        "builds.prod.paymnts: unknown service 'paymnts'",
        "tests.qa: unknown stage 'qa'",
        "approvals.production: unknown stage 'production'",
        "hooks.identity: unknown service with canary functions",
        "hooks.svc-orders-prod-apl",
        "alarms.0.service: unknown canaried service or function 'catalog'",
        "operator.0.at_state: unknown state 'Baking'",
        "lambdas.FinaliseRelease: unknown state 'FinaliseRelease'",
    ):
        assert wrong in text, text
    assert "my-scenario.yaml" in text
    assert "orders'" not in text.split("changed:")[1].split(";", maxsplit=1)[0]  # a known name is not reported
