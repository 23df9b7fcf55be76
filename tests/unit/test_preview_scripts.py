"""scripts/preview/preview.py, the helper .github/workflows/service-preview.yml runs: stack names CloudFormation
accepts, the URL and the retained resources read from CloudFormation answers (moto's, serialised as the AWS CLI prints
them), the PR comment, and its command line (exit code 2 and one line for bad input, step outputs)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import ROOT
from tests.unit import example_stack

SCRIPT = ROOT / "scripts" / "preview" / "preview.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preview_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


preview = _load()
VALID_STACK = re.compile(r"[a-zA-Z][-a-zA-Z0-9]*")  # CreateStack's StackName rule


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


def _as_cli_json(response: dict[str, Any]) -> dict[str, Any]:
    """A boto3 response as `aws ... --output json` prints it: metadata dropped, timestamps as strings."""
    response = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    loaded: dict[str, Any] = json.loads(json.dumps(response, default=str))
    return loaded


# --- stack names -------------------------------------------------------------------------------------------------


def test_given_a_service_and_a_pr_when_named_then_the_stack_is_service_pr_n() -> None:
    assert preview.stack_name("svc-company", 42) == "svc-company-pr-42"


def test_given_characters_cloudformation_refuses_when_named_then_they_become_single_hyphens() -> None:
    name = preview.stack_name("orders_api.v2--x", 7)

    assert name == "orders-api-v2-x-pr-7"
    assert VALID_STACK.fullmatch(name)


@pytest.mark.parametrize("service", ["2fa", "-", "_x", "été"])
def test_given_a_service_that_cannot_start_a_stack_name_when_named_then_it_is_refused_naming_the_field(
    service: str,
) -> None:
    with pytest.raises(preview.PreviewError, match=r"--service .*must start with a letter"):
        preview.stack_name(service, 1)


@pytest.mark.parametrize("pr", [0, -3])
def test_given_a_pr_number_that_is_not_positive_when_named_then_it_is_refused(pr: int) -> None:
    with pytest.raises(preview.PreviewError, match=r"--pr"):
        preview.stack_name("svc-company", pr)


def test_given_a_long_service_when_named_then_the_name_fits_keeps_the_pr_and_differs_from_a_similar_service() -> None:
    first = preview.stack_name("a" * 200 + "-one", 123456)
    second = preview.stack_name("a" * 200 + "-two", 123456)

    assert len(first) == len(second) == 128
    assert first.endswith("-pr-123456") and second.endswith("-pr-123456")
    assert first != second
    assert VALID_STACK.fullmatch(first) and VALID_STACK.fullmatch(second)
    assert preview.stack_name("a" * 200 + "-one", 123456) == first  # the same PR always gets the same stack


def test_given_the_example_limit_when_named_then_every_function_name_fits_lambdas_64() -> None:
    # examples/company-service names its functions ${AWS::StackName}-<verb>; "-delete" is the longest suffix.
    name = preview.stack_name("svc-" + "company" * 12, 98765, max_length=64 - len("-delete"))

    assert len(name + "-delete") <= 64
    assert name.endswith("-pr-98765")


@pytest.mark.parametrize("max_length", [0, 129, 12])
def test_given_an_unusable_max_length_when_named_then_it_is_refused(max_length: int) -> None:
    with pytest.raises(preview.PreviewError, match=r"--max-length"):
        preview.stack_name("svc-" + "x" * 40, 123456, max_length=max_length)


# --- answers from CloudFormation -----------------------------------------------------------------------------------

PREVIEW_TEMPLATE = {
    "Resources": {
        "Kept": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            },
        },
        "Dropped": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            },
        },
    },
    "Outputs": {
        "ApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com/preview"},
        "TableName": {"Value": {"Ref": "Kept"}},
    },
}


@pytest.fixture
def cloudformation() -> Any:
    with mock_aws():
        client = boto3.client("cloudformation", region_name="us-east-1")
        client.create_stack(StackName="svc-company-pr-42", TemplateBody=json.dumps(PREVIEW_TEMPLATE))
        yield client


def test_given_a_deployed_stack_when_its_url_output_is_read_then_it_is_the_output_value(cloudformation: Any) -> None:
    answer = _as_cli_json(cloudformation.describe_stacks(StackName="svc-company-pr-42"))

    assert preview.output_value(answer, "ApiUrl") == "https://abc123.execute-api.us-east-1.amazonaws.com/preview"


def test_given_a_missing_output_when_read_then_the_error_names_the_key_and_the_outputs_there_are(
    cloudformation: Any,
) -> None:
    answer = _as_cli_json(cloudformation.describe_stacks(StackName="svc-company-pr-42"))

    with pytest.raises(preview.PreviewError, match=r"--output-key 'Url'.*outputs: ApiUrl, TableName"):
        preview.output_value(answer, "Url")


def test_given_list_stacks_when_asked_then_a_live_stack_exists_and_a_deleted_one_does_not(cloudformation: Any) -> None:
    cloudformation.create_stack(StackName="svc-company-pr-7", TemplateBody=json.dumps(PREVIEW_TEMPLATE))
    cloudformation.delete_stack(StackName="svc-company-pr-7")
    answer = _as_cli_json(cloudformation.list_stacks())

    assert [s["StackStatus"] for s in answer["StackSummaries"] if s["StackName"] == "svc-company-pr-7"] == [
        "DELETE_COMPLETE"
    ]
    assert preview.stack_exists(answer, "svc-company-pr-42") is True
    assert preview.stack_exists(answer, "svc-company-pr-7") is False
    assert preview.stack_exists(answer, "svc-company-pr-8") is False


def test_given_a_stack_with_a_retained_table_when_listed_then_only_that_table_is_reported_with_its_physical_id(
    cloudformation: Any,
) -> None:
    template = _as_cli_json(cloudformation.get_template(StackName="svc-company-pr-42", TemplateStage="Processed"))
    resources = _as_cli_json(cloudformation.list_stack_resources(StackName="svc-company-pr-42"))
    kept = cloudformation.describe_stacks(StackName="svc-company-pr-42")["Stacks"][0]["Outputs"]
    table = next(o["OutputValue"] for o in kept if o["OutputKey"] == "TableName")

    retained = preview.retained_resources(template, resources)

    assert isinstance(template["TemplateBody"], dict)  # botocore decoded the JSON body, as the AWS CLI prints it
    assert [r.line() for r in retained] == [f"AWS::DynamoDB::Table Kept {table} (DeletionPolicy Retain)"]
    # The body as a string (another SDK, or botocore leaving it alone) reads the same.
    as_string = {**template, "TemplateBody": json.dumps(template["TemplateBody"])}
    assert preview.retained_resources(as_string, resources) == retained


def _example_table_stack(cloudformation: Any, env: str, stack: str) -> None:
    """A stack holding the example's CompanyTable as `env` deploys it: its DeletionPolicy and UpdateReplacePolicy
    resolved for the stage, as AWS::LanguageExtensions does before the stack is created (moto runs no transforms)."""
    table = example_stack.resource_as_deployed("CompanyTable", env)
    body = {"Resources": {"CompanyTable": table}, "Outputs": {"CompanyTableName": {"Value": {"Ref": "CompanyTable"}}}}
    cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(body))


@pytest.mark.parametrize(("env", "left"), [("preview", 0), ("staging", 1), ("prod", 1)])
def test_given_the_example_table_of_a_stage_when_its_stack_is_deleted_then_only_staging_and_prod_keep_it(
    cloudformation: Any, env: str, left: int
) -> None:
    stack = "svc-company-pr-7"
    _example_table_stack(cloudformation, env, stack)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    before = set(dynamodb.list_tables()["TableNames"])
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    table = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "CompanyTableName")
    template = _as_cli_json(cloudformation.get_template(StackName=stack, TemplateStage="Processed"))
    resources = _as_cli_json(cloudformation.list_stack_resources(StackName=stack))

    retained = preview.retained_resources(template, resources)  # what the teardown job warns about and comments
    cloudformation.delete_stack(StackName=stack)

    assert [r.line() for r in retained] == [f"AWS::DynamoDB::Table CompanyTable {table} (DeletionPolicy Retain)"] * left
    assert table in before
    assert (table in dynamodb.list_tables()["TableNames"]) is bool(left)  # a closed PR's preview leaves no table


def test_given_a_yaml_template_body_when_listing_retained_resources_then_the_processed_stage_is_asked_for() -> None:
    with pytest.raises(preview.PreviewError, match=r"--template-stage Processed"):
        preview.retained_resources({"TemplateBody": "Resources:\n  A: {Type: X}\n"}, {"StackResourceSummaries": []})


# --- the comment -------------------------------------------------------------------------------------------------


def test_given_a_deployed_preview_when_commented_then_the_comment_names_stack_commit_url_and_run() -> None:
    body = preview.comment_body(
        service="svc-company",
        stack="svc-company-pr-42",
        status="success",
        region="eu-west-1",
        url="https://abc123.execute-api.eu-west-1.amazonaws.com/preview",
        commit="405844d94a1ab226a96a9708a74107ba43bd23fa",
        run_url="https://github.com/acme/company/actions/runs/1",
    )

    assert body.splitlines()[0] == "### Preview of `svc-company`: Deployed"
    assert "- Stack: `svc-company-pr-42` (eu-west-1)" in body
    assert "- Commit: `405844d94a1a`" in body
    assert "- URL: https://abc123.execute-api.eu-west-1.amazonaws.com/preview" in body
    assert "[Workflow run](https://github.com/acme/company/actions/runs/1)" in body


def test_given_a_deleted_preview_with_a_retained_table_when_commented_then_the_table_is_listed() -> None:
    body = preview.comment_body(
        service="svc-company",
        stack="svc-company-pr-42",
        status="deleted",
        region="eu-west-1",
        retained=["AWS::DynamoDB::Table CompanyTable t-1 (DeletionPolicy Retain)"],
    )

    assert "Deleted" in body.splitlines()[0]
    assert "- `AWS::DynamoDB::Table CompanyTable t-1 (DeletionPolicy Retain)`" in body
    assert "URL" not in body


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("status", "ok", "--status"), ("url", "http://x", "--url"), ("commit", "HEAD", "--commit")],
)
def test_given_a_bad_comment_field_when_commented_then_the_field_is_named(field: str, value: str, message: str) -> None:
    fields = {"service": "s", "stack": "s-pr-1", "status": "success", "region": "us-east-1", field: value}

    with pytest.raises(preview.PreviewError, match=message):
        preview.comment_body(**fields)


# --- the command line, as the workflow calls it -------------------------------------------------------------------


def test_given_the_workflow_call_when_naming_the_stack_then_the_step_output_is_written(tmp_path: Path) -> None:
    output = tmp_path / "github_output"
    output.write_text("earlier=1\n")

    result = _cli("stack-name", "--service", "svc_company", "--pr", "5", "--github-output", str(output))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "svc-company-pr-5\n"
    assert output.read_text() == "earlier=1\nstack-name=svc-company-pr-5\n"  # appended, as $GITHUB_OUTPUT wants


def test_given_bad_input_on_the_command_line_when_run_then_exit_2_with_one_line_and_no_output(tmp_path: Path) -> None:
    output = tmp_path / "github_output"

    result = _cli("stack-name", "--service", "9lives", "--pr", "5", "--github-output", str(output))

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --service '9lives'")
    assert not output.exists()


def test_given_an_unreadable_answer_when_the_url_is_read_then_exit_2_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "stack.json"
    broken.write_text("not json")

    result = _cli("url", "--describe-stacks", str(broken), "--output-key", "ApiUrl")

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {broken}: cannot read JSON")
    assert "Traceback" not in result.stderr


def test_given_retained_resources_on_file_when_commented_then_the_cli_lists_them(tmp_path: Path) -> None:
    retained = tmp_path / "retained.txt"
    retained.write_text("AWS::DynamoDB::Table CompanyTable t-1 (DeletionPolicy Retain)\n\n")

    result = _cli(
        "comment", "--service", "svc-company", "--stack", "svc-company-pr-5", "--status", "deleted",
        "--region", "us-east-1", "--retained", str(retained),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("- `AWS::DynamoDB::Table") == 1
