"""Every canned AWS answer under tests/fixtures/aws has the shape AWS answers with.

Each file is validated against botocore's OUTPUT shape of its operation (the directory names: <botocore service>/
<Operation>/<case>.json): a key in the wrong case or a field the model does not have fails. Where the API reference
documents a behaviour the model cannot show, it is checked here too (GetDeployment's appSpecContent.content is always
null). Canned answers written inline in tests go through botocore's Stubber, which runs the same validation; the hook
tests' fake CodeDeploy validates its answers with `tests.fixtures.checked_answer`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import AWS_FIXTURES, operation_model, output_shape_problems

FIXTURES = sorted(AWS_FIXTURES.glob("*/*/*.json"))


def _ids(path: Path) -> str:
    return str(path.relative_to(AWS_FIXTURES))


def test_given_the_fixture_tree_when_listed_then_it_holds_the_hooks_codedeploy_answers() -> None:
    operations = {(p.parts[-3], p.parts[-2]) for p in FIXTURES}

    assert {
        ("codedeploy", "GetDeployment"),
        ("codedeploy", "GetApplicationRevision"),
        ("codedeploy", "GetDeploymentGroup"),
        ("codedeploy", "PutLifecycleEventHookExecutionStatus"),
    } <= operations
    assert not list(AWS_FIXTURES.rglob("*.json.*")), "stray files"
    assert len(FIXTURES) == len(list(AWS_FIXTURES.rglob("*.json"))), "fixtures must sit at <service>/<Operation>/"


@pytest.mark.parametrize("path", FIXTURES, ids=_ids)
def test_given_a_canned_answer_when_validated_against_botocore_then_it_has_the_operations_output_shape(
    path: Path,
) -> None:
    service, operation = path.parts[-3], path.parts[-2]
    assert operation in operation_model(service, operation).service_model.operation_names

    problems = output_shape_problems(service, operation, json.loads(path.read_text()))

    assert problems is None, f"{_ids(path)}: {problems}"


@pytest.mark.parametrize("path", sorted(AWS_FIXTURES.glob("codedeploy/GetDeployment/*.json")), ids=_ids)
def test_given_a_canned_get_deployment_when_read_then_its_appspec_has_no_content_only_a_sha256(path: Path) -> None:
    # "The content property of the appSpecContent object in the returned revision is always null."
    # https://docs.aws.amazon.com/codedeploy/latest/APIReference/API_GetDeployment.html
    revision = json.loads(path.read_text())["deploymentInfo"]["revision"]
    members = [revision[m] for m in ("appSpecContent", "string") if m in revision]

    assert members, f"{_ids(path)}: no AppSpec reference"
    assert all("content" not in m and m.get("sha256") for m in members), _ids(path)


def _set(document: dict[str, Any], path: list[str], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node = changed
    for step in path:
        node = node[step]
    node[key] = value
    return changed


def test_given_a_wrong_cased_key_or_an_unknown_field_when_validated_then_the_check_fails() -> None:
    # The control for the test above: the validator really rejects what AWS would never send.
    good = json.loads((AWS_FIXTURES / "codedeploy" / "GetDeployment" / "lambda.json").read_text())
    info = good["deploymentInfo"]
    wrong_case = {
        "deploymentInfo": {**{k: v for k, v in info.items() if k != "revision"}, "Revision": info["revision"]}
    }
    unknown_field = _set(good, ["deploymentInfo", "revision"], "appSpecContentText", "version: 0.0")
    wrong_type = _set(good, ["deploymentInfo"], "computePlatform", ["Lambda"])
    capitalised_top = {"DeploymentInfo": info}

    assert output_shape_problems("codedeploy", "GetDeployment", good) is None
    for bad in (wrong_case, unknown_field, wrong_type, capitalised_top):
        problems = output_shape_problems("codedeploy", "GetDeployment", bad)
        assert problems is not None and ("Unknown parameter" in problems or "Invalid type" in problems), bad
