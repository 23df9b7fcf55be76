"""Invariant 8: every API a state or handler calls is granted, nothing more; no `*` actions; `Resource: "*"` only
where AWS documents no resource-level permissions (Step Functions' CloudWatch Logs vended-logs delivery; the hooks'
status report and ELBv2 reads).

What each state needs is derived from the ASL. What each handler calls is a static table (HANDLER_CALLS), kept honest
by scanning the adapter modules for boto3 calls: a new call fails `test_..._every_boto3_call_is_in_the_table`. The
traffic hooks are in the table like every function: their adapters (codedeploy, checks_store, check_runners,
hook_clients) and the Powertools DynamoDB persistence layer their idempotency uses are scanned the same way.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from aws_lambda_powertools.utilities.idempotency.persistence import dynamodb as powertools_idempotency
from aws_lambda_powertools.utilities.parameters import secrets as powertools_secrets
from botocore import xform_name

from release_train.adapters import (
    accounts,
    alarms,
    check_runners,
    checks_store,
    codebuild,
    codedeploy,
    deployments,
    executions,
    fleet_store,
    functions,
    hook_clients,
    ledger,
    mac,
    notifier,
    sources,
    stage_clients,
)
from tests.unit.template.cfn import (
    ACCOUNT,
    ASL,
    PLACEHOLDER,
    REGION,
    Resolver,
    Statement,
    cfn_template,
    key_policy_statements,
    role_statements,
    roles,
)

# Documented: https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html (these actions take no resource ARN).
VENDED_LOGS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
# The traffic hooks' calls that take no resource ARN (Sids in template.yaml, docs/hooks.md; owned with the hooks).
HOOKS_NO_RESOURCE_LEVEL = {
    "codedeploy:PutLifecycleEventHookExecutionStatus",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    # only with HookSubnetIds (VpcConfig): Lambda's documented ENI reads work on "*" alone
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
}
# A task token names no ARN: SendTaskSuccess/Failure have no resource type, and only AnswerApproval may call them.
ANSWER_APPROVALS = {"states:SendTaskSuccess", "states:SendTaskFailure"}
ON_ALL_RESOURCES_ALLOWED = {
    "ReleaseTrainStateMachineRole": VENDED_LOGS,
    "BuildChunkStateMachineRole": VENDED_LOGS,
    "PreTrafficFunctionRole": HOOKS_NO_RESOURCE_LEVEL,
    "PostTrafficFunctionRole": HOOKS_NO_RESOURCE_LEVEL,
    "AnswerApprovalFunctionRole": ANSWER_APPROVALS,
    "CleanupExecutionFunctionRole": {"codedeploy:StopDeployment"},  # no resource type either
}
# Documented: https://docs.aws.amazon.com/step-functions/latest/dg/codebuild-iam.html (startBuild.sync).
CODEBUILD_SYNC = (
    "codebuild:StartBuild",
    "codebuild:StopBuild",
    "codebuild:BatchGetBuilds",
    "codebuild:BatchGetReports",
)
CODEBUILD_SYNC_RULE = ("events:PutTargets", "events:PutRule", "events:DescribeRule")
SYNC_RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventForCodeBuildStartBuildRule"

# --- what the adapters call -----------------------------------------------------------------------------------------

ADAPTER_MODULES = {
    "ledger": ledger,
    "fleet_store": fleet_store,
    "sources": sources,
    "notifier": notifier,
    "executions": executions,
    "mac": mac,
    "codebuild": codebuild,
    "alarms": alarms,
    "functions": functions,
    "deployments": deployments,
    # the traffic hooks
    "codedeploy": codedeploy,
    "checks_store": checks_store,
    "check_runners": check_runners,
    "hook_clients": hook_clients,  # builds the clients, calls nothing: a call added there must be listed here
    # A stage in another account (docs/accounts.md): these build the clients, call nothing themselves. The alarms,
    # functions and deployments calls made through them act in the target account with the assumed role's
    # credentials, so they are granted by accounts/target-account.yaml's TrainRole, derived from the same calls in
    # tests/unit/test_accounts_template.py (TRAIN_CALLS); here only sts:AssumeRole (ReadStagesInTargetAccounts).
    "accounts": accounts,
    "stage_clients": stage_clients,
    "powertools_idempotency": powertools_idempotency,  # the hooks' idempotency records (Powertools, not ours)
    "powertools_secrets": powertools_secrets,  # sources' and notifier's secrets (Powertools Parameters, cached)
}
ADAPTER_CALLS: dict[str, dict[str, str]] = {
    "ledger": {
        "get_item": "dynamodb:GetItem",
        "put_item": "dynamodb:PutItem",
        "update_item": "dynamodb:UpdateItem",
        "delete_item": "dynamodb:DeleteItem",
        "query": "dynamodb:Query",
        "batch_writer": "dynamodb:BatchWriteItem",
        # A transaction needs each item's action: finalize (Update META, Put BASELINE); create_release (Put META,
        # EXEC#, PINNED#).
        "transact_write_items": "dynamodb:UpdateItem+dynamodb:PutItem",
    },
    "functions": {
        "get_alias": "lambda:GetAlias",
        "get_function_configuration": "lambda:GetFunctionConfiguration",
        "update_alias": "lambda:UpdateAlias",
    },
    "deployments": {
        "list_deployments": "codedeploy:ListDeployments",
        "get_deployment": "codedeploy:GetDeployment",
        "get_application_revision": "codedeploy:GetApplicationRevision",
        "stop_deployment": "codedeploy:StopDeployment",
    },
    "fleet_store": {"get_object": "s3:GetObject", "put_object": "s3:PutObject"},
    "sources": {"get_branch": "codecommit:GetBranch"},
    "notifier": {"publish": "sns:Publish"},
    "powertools_secrets": {
        "get_secret_value": "secretsmanager:GetSecretValue",
        "batch_get_secret_value": "secretsmanager:BatchGetSecretValue",
        "create_secret": "secretsmanager:CreateSecret",
        "put_secret_value": "secretsmanager:PutSecretValue",
    },
    "executions": {
        "describe_execution": "states:DescribeExecution",
        "stop_execution": "states:StopExecution",
        "get_execution_history": "states:GetExecutionHistory",
        "send_task_success": "states:SendTaskSuccess",
        "send_task_failure": "states:SendTaskFailure",
        "start_execution": "states:StartExecution",
    },
    "mac": {"generate_mac": "kms:GenerateMac", "verify_mac": "kms:VerifyMac"},
    "codebuild": {
        "list_builds_for_project": "codebuild:ListBuildsForProject",
        "batch_get_builds": "codebuild:BatchGetBuilds",
        "stop_build": "codebuild:StopBuild",
        "batch_get_reports": "codebuild:BatchGetReports",
    },
    "alarms": {
        "describe_alarms": "cloudwatch:DescribeAlarms",
        "describe_alarm_history": "cloudwatch:DescribeAlarmHistory",
        "list_tags_for_resource": "cloudwatch:ListTagsForResource",
    },
    "codedeploy": {
        "get_deployment": "codedeploy:GetDeployment",
        "get_application_revision": "codedeploy:GetApplicationRevision",
        "get_deployment_group": "codedeploy:GetDeploymentGroup",
        "put_lifecycle_event_hook_execution_status": "codedeploy:PutLifecycleEventHookExecutionStatus",
        "describe_listeners": "elasticloadbalancing:DescribeListeners",
        "describe_load_balancers": "elasticloadbalancing:DescribeLoadBalancers",
        "describe_rules": "elasticloadbalancing:DescribeRules",
    },
    "checks_store": {"get_parameter": "ssm:GetParameter"},
    "check_runners": {"invoke": "lambda:InvokeFunction", "start_sync_execution": "states:StartSyncExecution"},
    "hook_clients": {},
    "accounts": {},  # sts:AssumeRole is botocore's AssumeRoleCredentialFetcher's, not a call of ours
    "stage_clients": {},
    "powertools_idempotency": {
        "get_item": "dynamodb:GetItem",
        "put_item": "dynamodb:PutItem",
        "update_item": "dynamodb:UpdateItem",
        "delete_item": "dynamodb:DeleteItem",
    },
}
# Calls only the operator CLI makes (with the operator's credentials), never a Lambda.
TRAINCTL_ONLY = {("fleet_store", "put_object")}
# What Powertools' SecretsProvider can call but the adapters never ask of it (only `.get`: see the test below).
POWERTOOLS_UNUSED = {
    ("powertools_secrets", "batch_get_secret_value"),
    ("powertools_secrets", "create_secret"),
    ("powertools_secrets", "put_secret_value"),
}

# --- what each handler calls, and a resource it calls it on ---------------------------------------------------------

LEDGER_TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/rt-LedgerTable"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:rt-NotificationsTopic"
WEBHOOK_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:release-train/slack-webhook-AbCdEf"
GITHUB_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:release-train/github-token-AbCdEf"
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:ReleaseTrain-rt:2026-W48"
PROJECT = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/train-api-staging"
TEST_PROJECT = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/train-e2e-staging"
REPORT_GROUP = f"arn:aws:codebuild:{REGION}:{ACCOUNT}:report-group/train-e2e-staging-reports"
ALARM = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:prod-api-5xx"

BREAK_GLASS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/rt-BreakGlassKey"

_LEDGER_READ = [("ledger", "get_item", LEDGER_TABLE), ("ledger", "query", LEDGER_TABLE)]
_LEDGER_WRITE = [
    *_LEDGER_READ,
    ("ledger", "put_item", LEDGER_TABLE),
    ("ledger", "update_item", LEDGER_TABLE),
    ("ledger", "delete_item", LEDGER_TABLE),
    ("ledger", "batch_writer", LEDGER_TABLE),
]
_EVIDENCE = [  # the gate's reads
    ("codebuild", "batch_get_builds", TEST_PROJECT),
    ("codebuild", "batch_get_reports", REPORT_GROUP),
    ("alarms", "describe_alarms", ALARM),
    ("alarms", "describe_alarm_history", ALARM),
    ("alarms", "list_tags_for_resource", ALARM),
]
_NOTIFY = [("notifier", "publish", TOPIC), ("powertools_secrets", "get_secret_value", WEBHOOK_SECRET)]
# The traffic hooks: a Lambda deployment of the fleet (SAM names the application and groups after the stack), an ECS
# blue/green one (its test listener), the checks they run.
IDEMPOTENCY_TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/rt-IdempotencyTable"
FLEET_APPLICATION = "svc-company-prod-ServerlessDeploymentApplication-1A2B3C4D5E6F"
FLEET_DEPLOYMENT_GROUP = (
    f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:{FLEET_APPLICATION}/"
    "svc-company-prod-CreateCompanyFunctionDeploymentGroup-6F5E4D3C2B1A"
)
FLEET_APPLICATION_ARN = f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:application:{FLEET_APPLICATION}"
TEST_LISTENER = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
LOAD_BALANCER = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/web/50dc6c495c0c9188"
CHECKS_PARAMETER = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/release-train/checks/svc-company-prod-create"
_HOOK_CALLS = [
    ("powertools_idempotency", "get_item", IDEMPOTENCY_TABLE),
    ("powertools_idempotency", "put_item", IDEMPOTENCY_TABLE),
    ("powertools_idempotency", "update_item", IDEMPOTENCY_TABLE),
    ("powertools_idempotency", "delete_item", IDEMPOTENCY_TABLE),
    ("codedeploy", "get_deployment", FLEET_DEPLOYMENT_GROUP),
    ("codedeploy", "get_application_revision", FLEET_APPLICATION_ARN),
    ("codedeploy", "get_deployment_group", FLEET_DEPLOYMENT_GROUP),
    ("codedeploy", "put_lifecycle_event_hook_execution_status", "*"),  # no resource-level permissions: only "*"
    ("codedeploy", "describe_listeners", TEST_LISTENER),
    ("codedeploy", "describe_load_balancers", LOAD_BALANCER),
    ("codedeploy", "describe_rules", "*"),  # no resource-level permissions: only "*"
    ("checks_store", "get_parameter", CHECKS_PARAMETER),
    ("check_runners", "invoke", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:svc-company-prod-create:7"),
    ("check_runners", "start_sync_execution", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:svc-orders-smoke"),
]
# An application and deployment group the ECS console created: not named with the fleet prefix (ADR 0005).
ECS_CONSOLE_GROUP = f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:AppECS-cluster-svc/DgpECS-cluster-svc"
ECS_CONSOLE_APPLICATION = f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:application:AppECS-cluster-svc"
ECS_CONSOLE_READS = [
    ("codedeploy:GetDeployment", ECS_CONSOLE_GROUP),
    ("codedeploy:GetDeploymentGroup", ECS_CONSOLE_GROUP),
    ("codedeploy:GetApplicationRevision", ECS_CONSOLE_APPLICATION),
]
HOOK_ROLES = ["PreTrafficFunctionRole", "PostTrafficFunctionRole"]
# What is live: a declared function's alias and one of its versions.
FLEET_ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:svc-company-prod-read:live"
FLEET_VERSION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:svc-company-prod-read:7"
_LIVE_AND_ROLLBACK = [
    ("functions", "get_alias", FLEET_ALIAS),
    ("functions", "get_function_configuration", FLEET_VERSION),
    ("functions", "update_alias", FLEET_ALIAS),
]
HANDLER_CALLS: dict[str, list[tuple[str, str, str]]] = {
    "PlanReleaseFunction": [
        *_LEDGER_WRITE,
        *_NOTIFY,
        ("ledger", "transact_write_items", LEDGER_TABLE),  # create_release: META, EXEC# and the pinned fleet at once
        ("fleet_store", "get_object", "arn:aws:s3:::rt-ConfigBucket/fleet.yaml"),
        ("sources", "get_branch", f"arn:aws:codecommit:{REGION}:{ACCOUNT}:payments"),
        ("powertools_secrets", "get_secret_value", GITHUB_SECRET),
        ("executions", "describe_execution", EXECUTION),  # is the lock holder still running?
        ("executions", "stop_execution", EXECUTION),  # stop a holder superseded while it waited for an approval
        ("mac", "verify_mac", BREAK_GLASS_KEY),  # a break-glass grant (granted by the key's policy, not the role's)
    ],
    "BreakGlassFunction": [
        ("ledger", "put_item", LEDGER_TABLE),  # the audit record, before the train starts
        ("fleet_store", "get_object", "arn:aws:s3:::rt-ConfigBucket/fleet.yaml"),
        ("notifier", "publish", TOPIC),
        ("mac", "generate_mac", BREAK_GLASS_KEY),
        ("executions", "start_execution", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ReleaseTrain-rt:live"),
    ],
    "AnswerApprovalFunction": [
        *_LEDGER_READ,
        ("ledger", "update_item", LEDGER_TABLE),
        ("ledger", "put_item", LEDGER_TABLE),
        ("executions", "send_task_success", "*"),
        ("executions", "send_task_failure", "*"),
    ],
    "LoadWaveFunction": [
        *_LEDGER_READ,
        ("ledger", "put_item", LEDGER_TABLE),
        ("ledger", "batch_writer", LEDGER_TABLE),
        ("functions", "get_alias", FLEET_ALIAS),
    ],
    "RecordWaveFunction": [
        *_LEDGER_READ,
        ("ledger", "put_item", LEDGER_TABLE),
        ("ledger", "batch_writer", LEDGER_TABLE),
        ("functions", "get_alias", FLEET_ALIAS),
        ("functions", "get_function_configuration", FLEET_VERSION),
    ],
    "RequestApprovalFunction": [*_LEDGER_READ, ("ledger", "put_item", LEDGER_TABLE), *_NOTIFY],
    "EvaluateGateFunction": [*_LEDGER_READ, ("ledger", "put_item", LEDGER_TABLE), *_EVIDENCE],
    "FinalizeReleaseFunction": [*_LEDGER_WRITE, *_NOTIFY, ("ledger", "transact_write_items", LEDGER_TABLE)],
    "RecordFailureFunction": [
        *_LEDGER_WRITE,
        *_NOTIFY,
        ("executions", "get_execution_history", EXECUTION),
        *_LIVE_AND_ROLLBACK,
    ],
    "CleanupExecutionFunction": [
        *_LEDGER_WRITE,
        *_NOTIFY,
        ("codebuild", "list_builds_for_project", PROJECT),
        ("codebuild", "batch_get_builds", PROJECT),
        ("codebuild", "stop_build", PROJECT),
        *_LIVE_AND_ROLLBACK,
        ("deployments", "list_deployments", FLEET_DEPLOYMENT_GROUP),
        ("deployments", "get_deployment", FLEET_DEPLOYMENT_GROUP),
        ("deployments", "get_application_revision", FLEET_APPLICATION_ARN),
        ("deployments", "stop_deployment", "*"),  # no resource type: only "*" matches
    ],
    "PreTrafficFunction": _HOOK_CALLS,
    "PostTrafficFunction": _HOOK_CALLS,
}


@cache
def _boto3_operations() -> frozenset[str]:
    services = [
        *("dynamodb", "s3", "sns", "secretsmanager", "codecommit", "codebuild", "cloudwatch", "stepfunctions"),
        *("codedeploy", "elbv2", "ssm", "lambda"),  # the traffic hooks
        "kms",  # break-glass grants
    ]
    models = [botocore.session.get_session().get_service_model(s) for s in services]  # no client needed
    names = {xform_name(op) for model in models for op in model.operation_names}
    return frozenset(names | {"batch_writer"})  # the DynamoDB Table resource's BatchWriteItem


def _boto3_calls_in(module: Any) -> set[str]:
    """Method calls named like a boto3 operation, and `get_paginator("<operation>")` arguments."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
            elif node.func.attr in _boto3_operations():
                found.add(node.func.attr)
    return found


# --- the state machine's needs, from the ASL --------------------------------------------------------------------


def _tasks(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Task":
            yield name, state
        for nested in [state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])]:
            if nested:
                yield from _tasks(nested["States"])


# The state machines of the stack and their definitions: the release's, and the chunk it starts (ADR 0007).
MACHINES = {
    "ReleaseTrainStateMachine": ASL,
    "BuildChunkStateMachine": ASL.with_name("build_chunk.asl.json"),
}
# startExecution.sync:2 (https://docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html): start the
# machine, follow and stop its executions, and the managed rule that reports their end.
SFN_SYNC_RULE_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"


def _execution_of(machine_arn: str) -> str:
    """An execution ARN of the machine a (possibly version-qualified) state machine ARN names."""
    unqualified = ":".join(machine_arn.split(":")[:7])
    return unqualified.replace(":stateMachine:", ":execution:") + ":3f1c2b9e-0000-4000-8000-000000000000"


def _state_needs() -> list[tuple[str, str, str, str]]:
    """(machine, state, action, resource ARN) for every Task state of every state machine."""
    cfn = cfn_template()
    needs = []
    for machine, asl in MACHINES.items():
        substitutions = Resolver(cfn).resolve(cfn["Resources"][machine]["Properties"])["DefinitionSubstitutions"]

        def substituted(text: str, values: dict[str, str] = substitutions) -> str:
            return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        for name, state in _tasks(json.loads(asl.read_text())["States"]):
            resource = state["Resource"]
            if resource in {"arn:aws:states:::lambda:invoke", "arn:aws:states:::lambda:invoke.waitForTaskToken"}:
                function = substituted(state["Parameters"]["FunctionName"])
                needs.append((machine, name, "lambda:InvokeFunction", function))
            elif resource == "arn:aws:states:::codebuild:startBuild.sync":
                needs += [(machine, name, action, PROJECT) for action in CODEBUILD_SYNC]
                needs += [(machine, name, action, SYNC_RULE_ARN) for action in CODEBUILD_SYNC_RULE]
            elif resource == "arn:aws:states:::states:startExecution.sync:2":
                child = substituted(state["Parameters"]["StateMachineArn"])
                needs.append((machine, name, "states:StartExecution", child))
                needs += [
                    (machine, name, a, _execution_of(child))
                    for a in ("states:DescribeExecution", "states:StopExecution")
                ]
                needs += [(machine, name, action, SFN_SYNC_RULE_ARN) for action in CODEBUILD_SYNC_RULE]
            else:
                pytest.fail(f"{name}: no IAM mapping for {resource}; add it from the Step Functions IAM docs")
    return needs


def _granted(statements: list[Statement], action: str, arn: str) -> bool:
    return any(s.grants(action, arn) for s in statements)


def _all_allow_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    cfn = cfn_template()
    for logical_id, resource in cfn["Resources"].items():
        documents = [p["PolicyDocument"] for p in resource.get("Properties", {}).get("Policies", [])]
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append(resource["Properties"]["PolicyDocument"])
        for document in documents:
            for statement in document["Statement"]:
                if statement.get("Effect") == "Allow":
                    yield logical_id, statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- tests ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module_name", sorted(ADAPTER_MODULES))
def test_given_an_adapter_module_when_scanned_then_every_boto3_call_is_in_the_table(module_name: str) -> None:
    assert _boto3_calls_in(ADAPTER_MODULES[module_name]) == set(ADAPTER_CALLS[module_name])


def test_given_the_adapter_calls_when_attributed_then_each_is_made_by_a_handler_or_only_by_trainctl() -> None:
    made = {(module, op) for calls in HANDLER_CALLS.values() for module, op, _ in calls}
    every = {(module, op) for module, ops in ADAPTER_CALLS.items() for op in ops}

    assert every - made == TRAINCTL_ONLY | POWERTOOLS_UNUSED


def test_given_the_adapters_that_read_secrets_when_scanned_then_they_only_get_through_powertools() -> None:
    """SecretsProvider.get -> GetSecretValue; get_multiple/set would need BatchGetSecretValue/PutSecretValue."""
    for module in (sources, notifier):
        calls = {
            (n.func.attr, ast.unparse(n.func.value))
            for n in ast.walk(ast.parse(Path(module.__file__).read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        # `set` only on a secrets provider or the parameters module (a threading.Event's set() is no PutSecretValue).
        providers = ("secret", "provider", "parameters")
        unwanted = {
            (attr, receiver)
            for attr, receiver in calls
            if attr in {"get_multiple", "get_secret"}
            or (attr == "set" and any(p in receiver.lower() for p in providers))
        }
        assert unwanted == set(), module.__name__


def test_given_the_template_when_its_functions_are_listed_then_each_has_an_entry_in_the_table() -> None:
    cfn = cfn_template()
    lambdas = {k for k, v in cfn["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}

    assert lambdas == set(HANDLER_CALLS)


@pytest.mark.parametrize(
    ("function", "module", "op", "arn"),
    [(f, m, op, arn) for f, calls in HANDLER_CALLS.items() for m, op, arn in calls],
)
def test_given_a_handler_call_when_its_role_is_checked_then_the_action_is_granted_on_that_resource(
    function: str, module: str, op: str, arn: str
) -> None:
    statements = _function_grants(function)

    for action in ADAPTER_CALLS[module][op].split("+"):  # a transaction needs the action of each of its items
        assert _granted(statements, action, arn), f"{function} calls {op} ({action}) on {arn}"


def _function_grants(function: str) -> list[Statement]:
    cfn = cfn_template()
    return role_statements(cfn, f"{function}Role") + key_policy_statements(cfn, f"{function}Role")


@pytest.mark.parametrize("function", sorted(HANDLER_CALLS))
def test_given_a_handler_role_when_its_services_are_listed_then_they_are_exactly_the_services_it_calls(
    function: str,
) -> None:
    granted = {a.split(":")[0] for s in _function_grants(function) for a in s.actions}
    needed = {ADAPTER_CALLS[m][op].split(":")[0] for m, op, _ in HANDLER_CALLS[function]}

    assert granted == needed


@pytest.mark.parametrize(("machine", "state", "action", "arn"), _state_needs())
def test_given_a_task_state_when_the_state_machine_role_is_checked_then_it_may_call_what_the_state_calls(
    machine: str, state: str, action: str, arn: str
) -> None:
    statements = role_statements(cfn_template(), f"{machine}Role")

    assert _granted(statements, action, arn), f"{machine}.{state} needs {action} on {arn}"


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_given_a_state_machine_role_when_its_grants_are_listed_then_each_is_needed_by_one_of_its_states(
    machine: str,
) -> None:
    """The other direction: nothing the machine's role allows goes unused by its own states (vended logs aside)."""
    needs = [(action, arn) for m, _, action, arn in _state_needs() if m == machine]
    unused = [
        action
        for statement in role_statements(cfn_template(), f"{machine}Role")
        for action in statement.actions
        if action not in VENDED_LOGS and not any(a == action and statement.grants(a, arn) for a, arn in needs)
    ]

    assert unused == []


def test_given_the_state_machine_roles_when_their_services_are_listed_then_only_the_release_may_start_machines() -> (
    None
):
    services = {
        machine: {a.split(":")[0] for s in role_statements(cfn_template(), f"{machine}Role") for a in s.actions}
        for machine in MACHINES
    }

    assert services == {
        "ReleaseTrainStateMachine": {"lambda", "codebuild", "events", "logs", "states"},
        "BuildChunkStateMachine": {"lambda", "codebuild", "events", "logs"},
    }


def test_given_every_allow_statement_when_its_actions_are_read_then_none_is_a_wildcard() -> None:
    wildcards = [
        (logical_id, action)
        for logical_id, statement in _all_allow_statements()
        for action in _as_list(statement["Action"])
        if action == "*" or str(action).endswith(":*")
    ]

    assert wildcards == []


def test_given_every_allow_statement_when_it_is_on_all_resources_then_it_is_only_a_documented_exception() -> None:
    unexpected = {
        (logical_id, action)
        for logical_id, statement in _all_allow_statements()
        if "*" in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"])
        if action not in ON_ALL_RESOURCES_ALLOWED.get(logical_id, set())
    }

    assert unexpected == set()


@pytest.mark.parametrize("role", sorted(k for k in roles(cfn_template()) if k.endswith("FunctionRole")))
def test_given_a_function_role_when_its_managed_policies_are_read_then_only_basic_execution_is_attached(
    role: str,
) -> None:
    arns = cfn_template()["Resources"][role]["Properties"].get("ManagedPolicyArns", [])

    assert arns == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]


@cache
def _resource_types() -> dict[str, list[str]]:
    """action (lower case: IAM action names are case-insensitive) -> its resource types, from the Service Authorization
    Reference as cfn-lint bundles it."""
    import cfnlint

    policies = json.loads((Path(cfnlint.__file__).parent / "data/AdditionalSpecs/Policies.json").read_text())
    return {
        f"{prefix}:{name}".lower(): list(spec.get("Resources", []))
        for prefix, service in policies.items()
        for name, spec in service.get("Actions", {}).items()
    }


def test_given_every_allow_statement_when_checked_against_the_authorization_reference_then_resources_can_match() -> (
    None
):
    """An action without a resource type is only ever matched by "*": a grant naming ARNs for it is silently useless
    (AccessDenied at run time). One with resource types must name them, not "*" (unless documented above)."""
    types = _resource_types()
    useless, too_wide = [], []
    for logical_id, statement in _all_allow_statements():
        on_all = "*" in _as_list(statement["Resource"])
        for action in _as_list(statement["Action"]):
            known = types.get(action.lower())
            assert known is not None, f"{logical_id}: {action} is not in the Service Authorization Reference"
            if not known and not on_all:
                useless.append((logical_id, action))
            if known and on_all and action not in ON_ALL_RESOURCES_ALLOWED.get(logical_id, set()):
                too_wide.append((logical_id, action))

    assert (useless, too_wide) == ([], [])


def test_given_every_role_when_task_answers_are_looked_for_then_only_answer_approval_may_send_them() -> None:
    holders = {
        logical_id
        for logical_id, statement in _all_allow_statements()
        for action in _as_list(statement["Action"])
        if action in ANSWER_APPROVALS
    }

    assert holders == {"AnswerApprovalFunctionRole"}


# --- the traffic hooks' CodeDeploy scope (ADR 0005) -----------------------------------------------------------------


@pytest.mark.parametrize("role", HOOK_ROLES)
@pytest.mark.parametrize(("action", "arn"), ECS_CONSOLE_READS)
def test_given_the_default_scope_when_an_ecs_console_deployment_is_read_then_it_is_not_granted(
    role: str, action: str, arn: str
) -> None:
    assert not _granted(role_statements(cfn_template(), role), action, arn)


@pytest.mark.parametrize("role", HOOK_ROLES)
@pytest.mark.parametrize(("action", "arn"), ECS_CONSOLE_READS)
def test_given_the_ecs_console_pattern_configured_when_its_deployment_is_read_then_it_is_granted(
    role: str, action: str, arn: str
) -> None:
    statements = role_statements(cfn_template(), role, {"HookExtraApplicationPattern": "AppECS-*"})

    assert _granted(statements, action, arn)
    assert _granted(statements, action, FLEET_APPLICATION_ARN if "Revision" in action else FLEET_DEPLOYMENT_GROUP)


@pytest.mark.parametrize("role", HOOK_ROLES)
def test_given_the_ecs_console_pattern_configured_when_the_role_is_read_then_nothing_but_codedeploy_reads_widen(
    role: str,
) -> None:
    default = role_statements(cfn_template(), role)
    configured = role_statements(cfn_template(), role, {"HookExtraApplicationPattern": "AppECS-*"})

    assert {s.sid for s in set(configured) - set(default)} == {"ReadTheDeployment", "ReadTheAppSpec"}


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("", True), ("AppECS-*", True), ("team.a_*", True), ("*", False), ("*ECS*", False), ("App/Dgp*", False)],
)
def test_given_an_extra_application_pattern_when_checked_by_the_template_then_a_leading_wildcard_is_refused(
    value: str, accepted: bool
) -> None:
    # A pattern starting with "*" would be every application in the account; "/" would reach into group names.
    pattern = cfn_template()["Parameters"]["HookExtraApplicationPattern"]["AllowedPattern"]

    assert (re.fullmatch(pattern, value) is not None) is accepted


# --- the traffic hooks in a VPC (HookSubnetIds; docs/hooks.md) -------------------------------------------------------

HOOK_VPC = {"HookSubnetIds": "subnet-0a1b2c3d4e5f67890,subnet-0f9e8d7c6b5a43210", "HookSecurityGroupIds": "sg-0123"}
ENI_IN_ACCOUNT = f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-0123456789abcdef0"


def _hook_statements(role: str, parameters: dict[str, str]) -> list[dict[str, Any]]:
    """The role's statements with its conditions evaluated (role_statements skips a statement wrapped in Fn::If)."""
    cfn = cfn_template()
    resolver = Resolver(cfn, parameters)
    raw = cfn["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    resolved: list[dict[str, Any]] = resolver.resolve(raw)
    return resolved


@pytest.mark.parametrize("role", HOOK_ROLES)
def test_given_no_hook_subnets_when_the_hooks_are_read_then_vpc_and_network_interface_grants_are_conditional(
    role: str,
) -> None:
    # Checked on the template's structure: the test Resolver has no CommaDelimitedList, so it cannot evaluate an
    # empty list parameter. CloudFormation joins the default [""] to "": HooksInVpc is false.
    cfn = cfn_template()
    in_vpc = {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "HookSubnetIds"}]}, ""]}]}
    raw = cfn["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    ec2_statements = [s for s in raw if "Fn::If" in s and s["Fn::If"][1]["Action"][0].startswith("ec2:")]

    assert cfn["Conditions"]["HooksInVpc"] == in_vpc
    assert cfn["Parameters"]["HookSubnetIds"]["Default"] == ""
    assert cfn["Resources"][role.removesuffix("Role")]["Properties"]["VpcConfig"]["Fn::If"][0] == "HooksInVpc"
    assert len(ec2_statements) == 2
    assert all(s["Fn::If"][0] == "HooksInVpc" and s["Fn::If"][2] == {"Ref": "AWS::NoValue"} for s in ec2_statements)
    assert not [s for s in raw if "Fn::If" not in s and any(a.startswith("ec2:") for a in _as_list(s["Action"]))]


@pytest.mark.parametrize("role", HOOK_ROLES)
def test_given_hook_subnets_when_the_hooks_are_read_then_they_join_the_vpc_with_lambdas_eni_actions_only(
    role: str,
) -> None:
    cfn = cfn_template()
    resolver = Resolver(cfn, HOOK_VPC)
    vpc = resolver.resolve(cfn["Resources"][role.removesuffix("Role")]["Properties"]["VpcConfig"])
    ec2 = {
        action: _as_list(s["Resource"])
        for s in _hook_statements(role, HOOK_VPC)
        for action in _as_list(s["Action"])
        if action.startswith("ec2:")
    }

    # the Resolver passes list parameters through as the override string
    assert vpc == {"SubnetIds": HOOK_VPC["HookSubnetIds"], "SecurityGroupIds": HOOK_VPC["HookSecurityGroupIds"]}
    # AWSLambdaVPCAccessExecutionRole's ec2 actions, no more; only the two Describe actions on "*".
    assert {a: r == ["*"] for a, r in ec2.items()} == {
        "ec2:DescribeNetworkInterfaces": True,
        "ec2:DescribeSubnets": True,
        "ec2:CreateNetworkInterface": False,
        "ec2:DeleteNetworkInterface": False,
        "ec2:AssignPrivateIpAddresses": False,
        "ec2:UnassignPrivateIpAddresses": False,
    }
    assert all(
        any(fnmatch.fnmatchcase(ENI_IN_ACCOUNT, p) for p in r) and not any(p.startswith("arn:aws:ec2:*") for p in r)
        for r in ec2.values()
    )
    assert cfn["Resources"][role]["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


def test_given_half_a_hook_vpc_config_when_deployed_then_a_template_rule_refuses_it_naming_the_other_half() -> None:
    # CloudFormation evaluates Rules before creating anything; Lambda needs subnets and security groups together.
    rules = {k: r for k, r in cfn_template()["Rules"].items() if k.startswith("Hook")}
    pairs = {
        (
            r["RuleCondition"]["Fn::Not"][0]["Fn::EachMemberEquals"][0]["Ref"],
            a["Assert"]["Fn::Not"][0]["Fn::EachMemberEquals"][0]["Ref"],
        )
        for r in rules.values()
        for a in r["Assertions"]
    }

    assert {("HookSubnetIds", "HookSecurityGroupIds"), ("HookSecurityGroupIds", "HookSubnetIds")} <= pairs
    assert all(
        a["AssertDescription"].count("Hook") == 2 for r in rules.values() if r["RuleCondition"] for a in r["Assertions"]
    )


def test_given_target_accounts_without_an_external_id_when_deployed_then_a_template_rule_refuses_it() -> None:
    rule = cfn_template()["Rules"]["TargetAccountsNeedExternalId"]

    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AllowedTargetAccounts"}, ""]}]}
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TargetAccountExternalId"}, ""]}]}


# The handlers that read or move a stage's aliases, alarms or deployments: they build StageClients from this
# environment, and only they may assume the target accounts' role.
STAGE_MODULES = {"functions", "alarms", "deployments"}
STAGE_ENVIRONMENT = {
    "ACCOUNT_ID": {"Ref": "AWS::AccountId"},
    "TARGET_ACCOUNT_ROLE_NAME": {"Ref": "TargetAccountRoleName"},
    "TARGET_ACCOUNT_EXTERNAL_ID": {"Ref": "TargetAccountExternalId"},
}


@pytest.mark.parametrize("function", sorted(HANDLER_CALLS))
def test_given_a_handler_when_it_reads_a_stage_then_it_has_the_target_account_environment_and_grant(
    function: str,
) -> None:
    cfn = cfn_template()
    variables = cfn["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    reads_a_stage = any(module in STAGE_MODULES for module, _, _ in HANDLER_CALLS[function])
    resolver = Resolver(cfn, {"AllowedTargetAccounts": "222222222222"})
    assumes = [
        s
        for policy in cfn["Resources"][f"{function}Role"]["Properties"].get("Policies", [])
        for s in map(resolver.resolve, policy["PolicyDocument"]["Statement"])
        if isinstance(s, dict) and s.get("Action") == "sts:AssumeRole"
    ]

    if reads_a_stage:  # the hooks are not among them: they run in the stage's own account (target-account.yaml)
        assert {k: variables.get(k) for k in STAGE_ENVIRONMENT} == STAGE_ENVIRONMENT
        assert len(assumes) == 1
    else:
        assert not (set(STAGE_ENVIRONMENT) - {"ACCOUNT_ID"}) & set(variables)
        assert assumes == []


# --- the schedule's role (docs/observability.md) --------------------------------------------------------------------


def test_given_the_schedule_role_when_its_grants_are_listed_then_they_are_exactly_what_its_target_needs() -> None:
    """Derived from the schedule: start its target (the `live` alias) and dead-letter to its DLQ (Scheduler,
    "Configuring a dead-letter queue": the execution role needs sqs:SendMessage on the queue), nothing more."""
    cfn = cfn_template()
    (schedule,) = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    target = Resolver(cfn).resolve(schedule["Properties"]["Target"])

    grants = {(a, r) for s in role_statements(cfn, "SchedulerRole") for a in s.actions for r in s.resources}

    assert grants == {("states:StartExecution", target["Arn"]), ("sqs:SendMessage", target["DeadLetterConfig"]["Arn"])}
    assert target["RoleArn"] == Resolver(cfn).arn("SchedulerRole")


# --- break glass (docs/guardrails.md) -------------------------------------------------------------------------------


def test_given_the_break_glass_key_then_only_break_glass_signs_and_only_plan_release_verifies() -> None:
    cfn = cfn_template()
    statements = cfn["Resources"]["BreakGlassKey"]["Properties"]["KeyPolicy"]["Statement"]
    resolver = Resolver(cfn)
    holders: dict[str, set[str]] = {}
    for raw in statements:
        principal = resolver.resolve(raw["Principal"]["AWS"])
        for action in _as_list(raw["Action"]):
            for use in ("kms:GenerateMac", "kms:VerifyMac"):
                if re.fullmatch(action.replace("*", ".*"), use):  # kms:Generate* would also match: none may
                    holders.setdefault(use, set()).add(principal)

    assert holders == {
        "kms:GenerateMac": {resolver.arn("BreakGlassFunctionRole")},
        "kms:VerifyMac": {resolver.arn("PlanReleaseFunctionRole")},
    }
    # and no IAM policy of the stack grants either (they would be inert, but must not suggest otherwise)
    assert not [a for _, st in _all_allow_statements() for a in _as_list(st["Action"]) if a.startswith("kms:")]


def test_given_allow_break_glass_off_when_the_template_is_read_then_every_break_glass_resource_is_conditional() -> None:
    cfn = cfn_template()
    break_glass = {k: v for k, v in cfn["Resources"].items() if k.startswith("BreakGlass")}
    outputs = {k: v for k, v in cfn["Outputs"].items() if k.startswith("BreakGlass")}

    assert {"BreakGlassKey", "BreakGlassFunction", "BreakGlassFunctionRole", "BreakGlassFunctionUrl"} <= set(
        break_glass
    )
    assert {k: v.get("Condition") for k, v in {**break_glass, **outputs}.items()} == dict.fromkeys(
        [*break_glass, *outputs], "BreakGlassAllowed"
    )
    assert Resolver(cfn).condition("BreakGlassAllowed") is False  # the default: no break glass
    assert Resolver(cfn, {"AllowBreakGlass": "true"}).condition("BreakGlassAllowed") is True
