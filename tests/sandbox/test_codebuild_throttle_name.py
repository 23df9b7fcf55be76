"""The error name Step Functions gives a refused StartBuild, and whether the train's Build state retries it.

What AWS documents:
- CodeBuild StartBuild's errors (API reference, StartBuild, "Errors"; botocore's codebuild service-2.json lists the
  same three): InvalidInputException, ResourceNotFoundException and AccountLimitExceededException ("An AWS service
  limit was exceeded for the calling AWS account"), which is what a full build queue answers ("Cannot have more than
  N builds in queue for the account"). Request-rate throttling ("Rate exceeded") is ThrottlingException, one of the
  API's Common Errors: not a shape in CodeBuild's model.
- Step Functions names a service integration's error `<Service>.<ErrorName>`
  (https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html), so the account-limit refusal is
  `CodeBuild.AccountLimitExceededException`.
- An error the service's (Java) SDK does not model surfaces under the SDK's base exception: the Step Functions guide
  names `Lambda.AWSLambdaException` for Lambda
  (https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html). CodeBuild's base exception in
  that SDK is `AWSCodeBuildException`, the name awslabs/aws-deployment-framework retries for CodeBuild throttling
  (pipeline_management.yml, RunCDK). `CodeBuild.CodeBuildException` is the v2 SDK's class name, which no Step
  Functions document uses for an optimized integration: it is not expected to ever match.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.harness import Sandbox, sandbox
from trainctl.sandbox.scenario import BuildBehaviour, Scenario

ROOT = Path(__file__).resolve().parents[2]
START_BUILD = "arn:aws:states:::codebuild:startBuild.sync"
ACCOUNT_LIMIT = "CodeBuild.AccountLimitExceededException"
UNMODELLED = "CodeBuild.AWSCodeBuildException"  # what an unmodelled CodeBuild error (ThrottlingException) is named


def _codebuild_states() -> dict[str, dict[str, Any]]:
    """Every Task state that starts a CodeBuild build, in every state machine of the project ("file:state")."""
    found: dict[str, dict[str, Any]] = {}

    def walk(file: str, states: dict[str, Any]) -> None:
        for name, state in states.items():
            if state.get("Resource") == START_BUILD:
                found[f"{file}:{name}"] = state
            for branch in state.get("Branches", []):
                walk(file, branch["States"])
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    walk(file, state[key]["States"])

    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        walk(path.name, json.loads(path.read_text())["States"])
    return found


STATES = _codebuild_states()


def _retried(state: dict[str, Any], error: str) -> bool:
    """Whether a retrier of the state catches `error` (States.ALL matches every error but States.Runtime)."""
    return any(error in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"] for r in state.get("Retry", []))


def _build_state() -> dict[str, Any]:
    (build,) = [s for key, s in STATES.items() if key.endswith(":Build")]
    return build


def _run_build_state(box: Sandbox) -> tuple[dict[str, Any], list[str]]:
    """The train's own Build state (its Parameters, ResultSelector and Retry), alone: its Catch and Next lead into
    the rest of the machine, so they are left out. Returns the execution and the error of each failed attempt."""
    state = {k: v for k, v in _build_state().items() if k not in ("Catch", "Next")}
    definition = {"StartAt": "Build", "States": {"Build": {**state, "End": True}}}
    box.world.codebuild.register_project("train-identity-staging", "staging", "identity")
    arn = box.start(
        definition,
        {"project": "train-identity-staging", "commit": "c0ffee", "stage": "staging", "release_id": "2026-W48"},
    )
    box.settle()
    events = box.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    errors = [e["taskFailedEventDetails"]["error"] for e in events if e["type"] == "TaskFailed"]
    return dict(box.sfn.describe_execution(executionArn=arn)), errors


def test_the_project_has_a_build_state_that_starts_codebuild_builds() -> None:
    assert any(key.endswith(":Build") for key in STATES), sorted(STATES)


@pytest.mark.parametrize("key", sorted(STATES))
def test_every_codebuild_state_retries_the_account_limit_refusal(key: str) -> None:
    assert _retried(STATES[key], ACCOUNT_LIMIT), f"{key} Retry: {STATES[key].get('Retry')}"


def test_given_startbuild_over_an_account_limit_then_the_sandbox_names_it_as_step_functions_does_and_build_retries(
    tmp_path: Path,
) -> None:
    scenario = Scenario(builds={"staging": {"identity": BuildBehaviour(throttled=2, duration=timedelta(minutes=6))}})
    with sandbox(tmp_path, scenario) as box:
        execution, errors = _run_build_state(box)
        assert box.world.codebuild.throttled_calls == 2
    assert errors == [ACCOUNT_LIMIT, ACCOUNT_LIMIT]
    assert execution["status"] == "SUCCEEDED"  # the Build state's own Retry took it through
    assert json.loads(execution["output"])["build"]["status"] == "SUCCEEDED"


def test_given_startbuild_over_the_request_rate_then_it_is_named_for_the_sdk_base_exception_and_build_retries(
    tmp_path: Path,
) -> None:
    throttled = BuildBehaviour(throttled=1, throttle_code="ThrottlingException")
    with sandbox(tmp_path, Scenario(builds={"staging": {"identity": throttled}})) as box:
        execution, errors = _run_build_state(box)
    assert errors == [UNMODELLED]
    assert execution["status"] == "SUCCEEDED"
