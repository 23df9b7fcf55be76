"""template.yaml and the ASL: lint clean, substitutions consistent, every function's code where the template says,
and `sam build` succeeds. External tools are `slow` and skipped only when the tool is not installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.unit.template.cfn import ASL, PLACEHOLDER, TEMPLATE, sam_template

CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
# sam build needs the functions' runtime on PATH (the Makefile's RUNTIME_PATH).
RUNTIME_DIRS = [Path.home() / ".pyenv" / "versions" / "3.13.0" / "bin"]
needs_cfn_lint = pytest.mark.skipif(not CFN_LINT.exists(), reason=f"cfn-lint not installed at {CFN_LINT}")
needs_sam = pytest.mark.skipif(not SAM.exists(), reason=f"aws-sam-cli not installed at {SAM}")


def _tool_env() -> dict[str, str]:
    path = os.pathsep.join([str(d) for d in RUNTIME_DIRS if d.exists()] + [os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "SAM_CLI_TELEMETRY": "0"}


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_tool_env(), capture_output=True, text=True, timeout=600, check=False
    )


# Invariant 7, per machine: one state machine, one ASL file. The release's machine and the chunk it starts (ADR 0007).
MACHINE_ASL = {"ReleaseTrainStateMachine": ASL, "BuildChunkStateMachine": ASL.with_name("build_chunk.asl.json")}


def _state_machines() -> dict[str, dict[str, Any]]:
    return {k: r for k, r in sam_template()["Resources"].items() if r["Type"] == "AWS::Serverless::StateMachine"}


def _asl_as_template(asl_text: str) -> str:
    """The ASL inlined into a minimal AWS::StepFunctions::StateMachine, placeholders replaced by dummy ARNs."""
    text = PLACEHOLDER.sub(
        lambda m: f"arn:aws:lambda:us-east-1:123456789012:function:{m.group(1).removesuffix('Arn')}", asl_text
    )
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "ReleaseTrain": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "RoleArn": "arn:aws:iam::123456789012:role/release-train",
                        "Definition": json.loads(text),
                    },
                }
            },
        }
    )


# --- fast structural checks -----------------------------------------------------------------------------------------


def test_given_the_template_when_its_state_machines_are_listed_then_each_has_its_own_asl_file() -> None:
    machines = _state_machines()

    assert {k: ROOT / m["Properties"]["DefinitionUri"] for k, m in machines.items()} == MACHINE_ASL


@pytest.mark.parametrize("machine", sorted(MACHINE_ASL))
def test_given_an_asl_when_its_placeholders_are_read_then_they_are_exactly_the_definition_substitutions(
    machine: str,
) -> None:
    placeholders = set(PLACEHOLDER.findall(MACHINE_ASL[machine].read_text()))

    assert placeholders == set(_state_machines()[machine]["Properties"]["DefinitionSubstitutions"])


def test_given_the_release_machine_when_it_starts_chunks_then_it_names_the_chunk_version_deployed_with_it() -> None:
    """A running train must start the chunk definition it shipped with (its version), never the live alias."""
    substitutions = _state_machines()["ReleaseTrainStateMachine"]["Properties"]["DefinitionSubstitutions"]

    assert substitutions["BuildChunkStateMachineArn"] == {"Ref": "BuildChunkStateMachineVersion"}
    assert _state_machines()["BuildChunkStateMachine"]["Properties"]["AutoPublishAlias"]


@pytest.mark.parametrize(
    "logical_id",
    sorted(k for k, v in sam_template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function"),
)
def test_given_a_function_in_the_template_when_its_code_is_looked_up_then_the_handler_exists(logical_id: str) -> None:
    props = sam_template()["Resources"][logical_id]["Properties"]
    module, function = props["Handler"].rsplit(".", 1)
    source = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")

    assert source.exists(), f"{logical_id}: {source} missing"
    assert f"def {function}(" in source.read_text(), f"{logical_id}: no {function}() in {source}"


# --- linters and sam ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_cfn_lint
def test_given_the_template_when_cfn_lint_runs_then_it_reports_nothing() -> None:
    result = _run(CFN_LINT, TEMPLATE)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@needs_cfn_lint
@pytest.mark.parametrize("machine", sorted(MACHINE_ASL))
def test_given_the_asl_inlined_in_a_state_machine_when_cfn_lint_runs_then_e3601_reports_nothing(
    tmp_path: Path, machine: str
) -> None:
    inlined = tmp_path / "asl.json"
    inlined.write_text(_asl_as_template(MACHINE_ASL[machine].read_text()))

    result = _run(CFN_LINT, inlined)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@needs_cfn_lint
def test_given_a_broken_asl_inlined_when_cfn_lint_runs_then_e3601_catches_it(tmp_path: Path) -> None:
    # The control for the test above: the rule really looks inside the inlined definition.
    asl = json.loads(ASL.read_text())
    asl["States"]["Orphan"] = {"Type": "Task"}
    inlined = tmp_path / "broken.json"
    inlined.write_text(_asl_as_template(json.dumps(asl)))

    result = _run(CFN_LINT, inlined)

    assert "E3601" in result.stdout


@pytest.mark.slow
@pytest.mark.sam
@needs_sam
def test_given_the_template_when_sam_validates_with_lint_then_it_passes() -> None:
    result = _run(SAM, "validate", "--lint", "--template", TEMPLATE, "--region", "us-east-1")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.sam
@needs_sam
@pytest.mark.skipif(
    not any((d / "python3.13").exists() for d in RUNTIME_DIRS) and shutil.which("python3.13") is None,
    reason="sam build needs python3.13 (the functions' runtime) on PATH",
)
def test_given_the_template_when_sam_builds_then_every_function_and_the_layer_with_its_package_are_built(
    tmp_path: Path,
) -> None:
    build = tmp_path / "build"

    result = _run(SAM, "build", "--template", TEMPLATE, "--build-dir", build)

    assert result.returncode == 0, result.stdout + result.stderr
    functions = {k for k, v in sam_template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions <= {p.name for p in build.iterdir()}
    layer = build / "ReleaseTrainLayer" / "python"
    assert (layer / "release_train" / "services" / "__init__.py").exists()
    assert list((layer / "pydantic_core").glob("*aarch64*.so")), "the layer is built for arm64 like the functions"


def _versions_with_layer_at(content_uri: str) -> dict[str, str]:
    """function logical id -> the logical id of the Version SAM generates, for a layer uploaded to `content_uri`."""
    import copy

    from samtranslator.translator.transform import transform

    from tests.unit.template.cfn import _NoManagedPolicies, sam_template

    template = copy.deepcopy(sam_template())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/code.zip"  # the functions' own code does not change
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = content_uri  # `sam deploy` uploads the layer under its content hash
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            props["Definition"] = json.loads((ROOT / props.pop("DefinitionUri")).read_text())
    cfn = transform(template, {}, _NoManagedPolicies())
    return {
        body["Properties"]["FunctionName"]["Ref"]: logical
        for logical, body in cfn["Resources"].items()
        if body["Type"] == "AWS::Lambda::Version"
    }


def test_given_only_the_layer_changed_when_transformed_then_every_function_publishes_a_new_version() -> None:
    # The train's logic lives in the layer: an upgrade that changes only the layer must move every function's `live`
    # alias (a new Version logical id), or the next trains would keep running the old code.
    before = _versions_with_layer_at("s3://artifacts/0f1e2d3c.zip")
    after = _versions_with_layer_at("s3://artifacts/9a8b7c6d.zip")

    assert before.keys() == after.keys() and len(before) >= 10
    assert [f for f in before if before[f] == after[f]] == []


def test_given_every_function_when_its_logs_are_looked_up_then_a_log_group_keeps_them_for_the_retention_parameter() -> (
    None
):
    from tests.unit.template.cfn import cfn_template

    cfn = cfn_template()
    functions = {k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    groups = {
        v["Properties"]["LogGroupName"]["Fn::Sub"]: v["Properties"]["RetentionInDays"]
        for v in cfn["Resources"].values()
        if v["Type"] == "AWS::Logs::LogGroup" and isinstance(v["Properties"]["LogGroupName"], dict)
    }

    # Lambda writes to /aws/lambda/<function name> (Ref of a function is its name); without a group of ours it would
    # create one that never expires.
    assert {f"/aws/lambda/${{{f}}}" for f in functions} <= groups.keys()
    assert {str(groups[name]) for name in groups} == {"{'Ref': 'LogRetentionDays'}"}
    assert cfn["Parameters"]["LogRetentionDays"]["Default"] == 90


# --- observability: dashboard, alarms, the schedule's DLQ (docs/observability.md) -----------------------------------

_SEARCH = re.compile(r"SEARCH\('\{(?P<namespace>[^,}]+),(?P<dimensions>[^}]*)\} MetricName=\"(?P<name>\w+)\"'")


def _dashboard_metrics() -> set[tuple[str, str, tuple[str, ...]]]:
    """(namespace, metric, dimension names) of every line on the dashboard: SEARCH expressions and metric arrays."""
    (dashboard,) = [r for r in sam_template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = json.loads(PLACEHOLDER.sub("stand-in", dashboard["Properties"]["DashboardBody"]["Fn::Sub"]))
    found = set()
    for widget in body["widgets"]:
        for line in widget["properties"].get("metrics", []):
            if isinstance(line[0], dict):
                match = _SEARCH.match(line[0]["expression"])
                assert match, f"unexpected expression {line[0]['expression']}"
                dims = tuple(match["dimensions"].split(","))
                found.add((match["namespace"], match["name"], dims))
            else:
                namespace, name, *pairs = line
                found.add((namespace, name, tuple(pairs[::2])))
    return found


def test_given_the_dashboard_when_its_train_metrics_are_read_then_they_are_exactly_the_catalogue_and_dimensions() -> (
    None
):
    from release_train.adapters.metrics import CATALOGUE, NAMESPACE

    ours = {(name, dims) for namespace, name, dims in _dashboard_metrics() if namespace == NAMESPACE}

    # Nothing on the dashboard that no code emits, nothing emitted that the dashboard leaves out.
    assert ours == {(spec.name, spec.dimensions) for spec in CATALOGUE}


def test_given_the_dashboard_when_its_aws_metrics_are_read_then_executions_schedule_and_dlq_are_shown() -> None:
    aws = {(namespace, name) for namespace, name, _ in _dashboard_metrics() if namespace.startswith("AWS/")}

    assert {
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsAborted"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("AWS/Scheduler", "TargetErrorCount"),
        ("AWS/Scheduler", "InvocationDroppedCount"),
        ("AWS/Scheduler", "InvocationsSentToDeadLetterCount"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    } <= aws


def _alarms() -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in sam_template()["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_given_every_alarm_when_read_then_it_pages_the_topic_chooses_missing_data_and_fits_cloudwatch_limits() -> None:
    for logical_id, alarm in _alarms().items():
        period, evaluations = alarm["Period"], alarm["EvaluationPeriods"]
        # PutMetricAlarm (botocore's model): Period 10/20/30 or a multiple of 60; Period x EvaluationPeriods
        # <= 604,800 s, and <= 86,400 s when the period is under an hour.
        assert period in (10, 20, 30) or period % 60 == 0, logical_id
        assert period * evaluations <= (604_800 if period >= 3600 else 86_400), logical_id
        assert alarm["TreatMissingData"] in {"breaching", "notBreaching", "ignore", "missing"}, logical_id
        assert alarm["AlarmActions"] == [{"Ref": "NotificationsTopic"}], logical_id


def test_given_the_schedule_when_its_alarms_are_read_then_errors_drops_dlq_and_silence_each_page() -> None:
    watched = {
        (a["Namespace"], a["MetricName"], a["TreatMissingData"], a["ComparisonOperator"])
        for a in _alarms().values()
        if a["Namespace"] in {"AWS/Scheduler", "AWS/SQS"}
    }

    assert watched == {
        ("AWS/Scheduler", "TargetErrorCount", "notBreaching", "GreaterThanOrEqualToThreshold"),
        ("AWS/Scheduler", "InvocationDroppedCount", "notBreaching", "GreaterThanOrEqualToThreshold"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "ignore", "GreaterThanOrEqualToThreshold"),
        # a week without a firing: silence is the failure
        ("AWS/Scheduler", "InvocationAttemptCount", "breaching", "LessThanThreshold"),
    }
    group = {"Name": "ScheduleGroup", "Value": {"Ref": "ReleaseTrainScheduleGroup"}}
    assert all(a["Dimensions"] == [group] for a in _alarms().values() if a["Namespace"] == "AWS/Scheduler")


def test_given_the_no_train_alarm_when_read_then_its_window_covers_a_whole_week() -> None:
    (silence,) = [a for a in _alarms().values() if a["MetricName"] == "InvocationAttemptCount"]

    assert silence["Period"] * silence["EvaluationPeriods"] == 7 * 86_400
    assert silence["DatapointsToAlarm"] == silence["EvaluationPeriods"]  # every day of the week silent
    assert (silence["Statistic"], silence["Threshold"]) == ("Sum", 1)
    assert silence["OKActions"] == [{"Ref": "NotificationsTopic"}]  # a new stack starts in ALARM: say when it clears


def test_given_the_schedule_when_read_then_it_retries_dead_letters_to_an_encrypted_14_day_queue_in_its_own_group() -> (
    None
):
    resources = sam_template()["Resources"]
    (schedule,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    target = schedule["Target"]
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    queue = resources[queue_id]

    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert queue["Type"] == "AWS::SQS::Queue" and "FifoQueue" not in queue["Properties"]  # Scheduler refuses FIFO
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86_400
    assert queue["Properties"].get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue["Properties"]
    assert schedule["GroupName"] == {"Ref": "ReleaseTrainScheduleGroup"}
