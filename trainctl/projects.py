"""`trainctl fleet projects`: every CodeBuild project the train starts, as one CloudFormation template made from the
fleet, so onboarding a service is one fleet entry plus deploying this template (docs/onboarding.md).

The template is a pure function of the fleet and the options: names come from the fleet model (`Fleet.project_for`,
`Stage.test_project`, never re-derived here), resources are sorted and their logical ids derived from their names, so
a service removed from the fleet is a set of resources removed from the template and CloudFormation deletes them.
Property names follow the AWS::CodeBuild::Project resource spec cfn-lint ships; enumerations (source, auth and
environment types) follow botocore's codebuild model.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import click
import yaml
from pydantic import ValidationError

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import (
    CodeCommitSource,
    Fleet,
    GitHubSource,
    SecretId,
    format_validation_error,
    parse_fleet,
)
from trainctl.cli import fleet
from trainctl.convention import USAGE, CommandError, guarded, note

# template.yaml's ProjectPrefix AllowedPattern: the state machine may start only projects with this prefix.
PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,40}$")
# CloudFormation quotas: 500 resources per template, 1 MB template body (from S3; `sam deploy` uploads it there).
MAX_RESOURCES = 500
MAX_TEMPLATE_BYTES = 1_000_000
# IAM quotas: a managed policy holds at most 6,144 characters (whitespace not counted) and a role has at most 10
# managed policies attached (the default; adjustable to 20). Inline policies would cap a role at 10,240 in all.
MAX_POLICY = 6_144
MAX_POLICIES_PER_ROLE = 10
# CodeBuild CreateReportGroup `name`: 2-128 characters (AWS::CodeBuild::ReportGroup Name in cfn-lint's spec).
MAX_REPORT_GROUP_NAME = 128
# The curated Amazon Linux 2023 images ("Docker images provided by CodeBuild",
# https://docs.aws.amazon.com/codebuild/latest/userguide/build-env-ref-available.html). Keyed by architecture, spelt
# as a CloudFormation Mappings key may be (letters, digits, '.', '-': no x86_64).
IMAGES = {
    "arm64": {"Type": "ARM_CONTAINER", "Image": "aws/codebuild/amazonlinux-aarch64-standard:3.0"},
    "amd64": {"Type": "LINUX_CONTAINER", "Image": "aws/codebuild/amazonlinux-x86_64-standard:5.0"},
}
# On-demand EC2 compute types (botocore's ComputeType). Not every type exists for every architecture and region
# ("Build environment compute modes and types"); CodeBuild refuses a missing combination when the stack deploys.
COMPUTE_TYPES = ["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE", "BUILD_GENERAL1_XLARGE"]
# The values template.yaml's LogRetentionDays allows (CloudWatch Logs PutRetentionPolicy).
LOG_RETENTION_DAYS = [
    *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545),
    *(731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
]
# Report actions a build needs to write test results (CodeBuild User Guide, "Allow CodeBuild to interact with other
# AWS services"); CreateReportGroup only where the buildspec names a group CodeBuild creates (<project>-<name>).
REPORT_ACTIONS = [
    "codebuild:CreateReport",
    "codebuild:UpdateReport",
    "codebuild:BatchPutTestCases",
    "codebuild:BatchPutCodeCoverages",
]
# A GitHub App connection: the project role needs these on the connection ("GitHub App connections", CodeBuild
# User Guide, step 2). Connections made before July 2024 have codestar-connections ARNs, and an IAM action's prefix
# must match the ARN's, so the action prefix is taken from the ARN itself.
CONNECTION_ACTIONS = ("GetConnectionToken", "GetConnection")
CONNECTION_ARN = r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
ROLE_ARN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"
# AssumeRole ExternalId: 2-1224 of letters, digits and _+=,.@:/- (STS API reference); as accounts/target-account.yaml.
EXTERNAL_ID = "^[A-Za-z0-9+=,.@:/_-]{2,1224}$"
EXTERNAL_ID_PARAMETER = "TargetAccountExternalId"
LOG_GROUP_ROOT = "/release-train"
GENERATOR = "trainctl fleet projects"


class _TestsGitHub(GitHubSource):
    # The train starts a test project without a SourceVersion (ASL RunTests), so no head is resolved: no token.
    token_secret: SecretId | None = None  # type: ignore[assignment]


TestsSource = CodeCommitSource | _TestsGitHub


@dataclass(frozen=True)
class Project:
    """One CodeBuild project of the template: a service's build for a stage, or a stage's test project."""

    fleet: str
    name: str
    stage: str
    service: str | None  # None: the stage's test project
    source: CodeCommitSource | GitHubSource
    buildspec: str

    @property
    def log_group(self) -> str:
        return f"{self.log_root}/{self.name}"

    @property
    def log_root(self) -> str:
        # One path per fleet, stage and kind: a role may write to exactly its own projects' groups with one ARN.
        return f"{LOG_GROUP_ROOT}/{self.fleet}/{self.stage}/{'tests' if self.service is None else 'builds'}"

    @property
    def report_group(self) -> str:
        return f"{self.name}-reports"


def logical_id(kind: str, name: str) -> str:
    """A CloudFormation logical id (alphanumeric, at most 255) that depends only on `name`: its words capitalised,
    then 8 hex digits of its SHA-256, so names differing only in '-', '_' or case never collide, and adding or
    removing another service never renames (and so replaces) this one's resources."""
    return f"{kind}{_camel(name)[:200]}{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _camel(name: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", name) if w)


def parameter_id(stage: str) -> str:
    """The stage's deploy role parameter, e.g. StagingDeployRoleArn (stage names are [a-z0-9-]: readable ids; two
    stages that would share one are refused)."""
    return _camel(stage) + "DeployRoleArn"


def tests_source(codecommit: str | None, github: str | None, branch: str) -> TestsSource | None:
    if codecommit and github:
        raise CommandError("--tests-codecommit and --tests-github: give one source for the test projects", USAGE)
    try:
        if codecommit:
            return CodeCommitSource(codecommit=codecommit, branch=branch)
        if github:
            return _TestsGitHub(github=github, branch=branch)
    except ValidationError as exc:
        options = {"codecommit": "--tests-codecommit", "github": "--tests-github", "branch": "--tests-branch"}
        problems = [
            options.get(line.split(":", 1)[0], line.split(":", 1)[0]) + ":" + line.split(":", 1)[1]
            for line in format_validation_error(exc)
        ]
        raise CommandError("; ".join(problems), USAGE) from exc
    return None


def projects(
    parsed: Fleet, prefix: str, tests: TestsSource | None, buildspec: str, tests_buildspec: str, source: str
) -> list[Project]:
    """The fleet's projects, refused (InvalidInput, every problem named) where the train could not start them."""
    problems: list[str] = []
    if not PREFIX.match(prefix):
        problems.append(
            f"--prefix: '{prefix}' is not a ProjectPrefix (1 letter or digit, then 1-40 letters, digits, '_' or '-')"
        )
    # Fleet.projects() is the list the guardrails check and the state machine starts: the same names, same fields.
    for where, name in parsed.projects():
        if not name.startswith(prefix):
            problems.append(
                f"{where}: '{name}' does not start with ProjectPrefix '{prefix}' (the state machine may start only "
                "those projects); rename it in the fleet or pass the stack's --prefix"
            )
    found = [
        Project(
            parsed.fleet, parsed.project_for(service, stage.name), stage.name, service.name, service.source, buildspec
        )
        for service in parsed.services
        for stage in parsed.stages
    ]
    for k, stage in enumerate(parsed.stages):
        if stage.test_project is None:
            continue
        if tests is None:
            problems.append(
                f"stages[{k}].test_project: '{stage.test_project}' needs a source: pass --tests-codecommit REPO or "
                "--tests-github OWNER/REPO"
            )
            continue
        project = Project(parsed.fleet, stage.test_project, stage.name, None, tests, tests_buildspec)
        if len(project.report_group) > MAX_REPORT_GROUP_NAME:
            problems.append(
                f"stages[{k}].test_project: report group '{project.report_group}' is longer than CodeBuild's "
                f"{MAX_REPORT_GROUP_NAME} characters; shorten the test project's name"
            )
        found.append(project)
    if problems:
        raise InvalidInput(source, problems)
    return sorted(found, key=lambda p: (p.stage, p.name))


def template(parsed: Fleet, found: list[Project], prefix: str, source: str) -> dict[str, Any]:
    """The CloudFormation template: parameters, one role per stage (and one for its tests), and per project its log
    group, report group (test projects) and AWS::CodeBuild::Project."""
    stages = [s.name for s in parsed.stages]
    param_ids = {stage: parameter_id(stage) for stage in stages}
    clashes = sorted(s for s in stages if list(param_ids.values()).count(param_ids[s]) > 1)
    if clashes:
        raise InvalidInput(
            source, [f"stages: {clashes} make the same parameter name {param_ids[clashes[0]]}; rename one stage"]
        )
    uses_github = any(isinstance(p.source, GitHubSource) for p in found)
    parameters: dict[str, Any] = {
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 90,
            "AllowedValues": LOG_RETENTION_DAYS,
            "Description": "How long every project's build logs are kept (CloudWatch Logs retention, days).",
        },
        "QueuedTimeoutInMinutes": {
            "Type": "Number",
            "Default": 480,
            "MinValue": 5,
            "MaxValue": 480,
            "Description": "How long a build may wait for capacity before CodeBuild fails it (5-480).",
        },
        "TimeoutInMinutes": {
            "Type": "Number",
            "Default": 60,
            "MinValue": 5,
            "MaxValue": 2160,
            "Description": "How long a build may run, a canary deploy included (5-2160).",
        },
        "BuildArchitecture": {
            "Type": "String",
            "Default": "arm64",
            "AllowedValues": sorted(IMAGES),
            "Description": "arm64 (Graviton, ARM_CONTAINER) or amd64 (x86-64, LINUX_CONTAINER): Amazon Linux 2023.",
        },
        "ComputeType": {"Type": "String", "Default": COMPUTE_TYPES[0], "AllowedValues": COMPUTE_TYPES},
    }
    # A stage that names its deploy_role (a stage in another account, docs/accounts.md) needs no parameter.
    deploy_roles: dict[str, Any] = {
        s.name: s.deploy_role if s.deploy_role is not None else {"Ref": param_ids[s.name]} for s in parsed.stages
    }
    for stage in stages:
        if isinstance(deploy_roles[stage], dict):
            parameters[param_ids[stage]] = {
                "Type": "String",
                "AllowedPattern": ROLE_ARN,
                "Description": f"The role {stage} builds assume to deploy (it trusts the {stage} build role output).",
            }
    if any(s.deploy_role is not None for s in parsed.stages):
        parameters[EXTERNAL_ID_PARAMETER] = {
            "Type": "String",
            "AllowedPattern": EXTERNAL_ID,
            "Description": "The ExternalId the target accounts' deploy roles require (accounts/target-account.yaml); "
            "not a secret.",
        }
    if uses_github:
        parameters["GitHubConnectionArn"] = {
            "Type": "String",
            "AllowedPattern": CONNECTION_ARN,
            "Description": "A CodeConnections (or CodeStar Connections) GitHub App connection, status AVAILABLE.",
        }
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    problems: list[str] = []
    for stage in stages:
        for tests in (False, True):
            members = [p for p in found if p.stage == stage and (p.service is None) == tests]
            if not members:
                continue
            role = _camel(stage) + ("TestRole" if tests else "BuildRole")
            role_resources = _role(role, stage, members, prefix, None if tests else deploy_roles[stage])
            policies = len(role_resources) - 1
            if policies > MAX_POLICIES_PER_ROLE:
                problems.append(
                    f"services: the {'test' if tests else 'build'} role of stage {stage} would need {policies} "
                    f"managed policies of {MAX_POLICY} characters, over IAM's {MAX_POLICIES_PER_ROLE} per role; "
                    "split the fleet into several fleets"
                )
            resources.update(role_resources)
            outputs[role + "Arn"] = {
                "Description": f"The {stage} {'test' if tests else 'build'} role"
                + ("" if tests else f": {_trusted_by(deploy_roles[stage], param_ids[stage])} must trust it"),
                "Value": {"Fn::GetAtt": [role, "Arn"]},
            }
            for project in members:
                resources.update(_project(project, role, deploy_roles[stage]))
    doc: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"release-train: the CodeBuild projects of fleet {parsed.fleet} (generated by {GENERATOR}; "
        "edit the fleet and regenerate, never this file)",
        "Metadata": {"ReleaseTrain": {"Fleet": parsed.fleet, "ProjectPrefix": prefix, "Stages": stages}},
        "Parameters": parameters,
        "Mappings": {"Images": IMAGES},
        "Resources": dict(sorted(resources.items())),
        "Outputs": dict(sorted(outputs.items())),
    }
    if len(resources) > MAX_RESOURCES:
        problems.insert(
            0,
            f"services: {len(found)} projects make {len(resources)} resources, over CloudFormation's "
            f"{MAX_RESOURCES} per template; split the fleet into several fleets (one template per part is not yet "
            "supported)",
        )
    if problems:
        raise InvalidInput(source, problems)
    return doc


def _trusted_by(deploy_role: Any, parameter: str) -> str:
    if isinstance(deploy_role, str):
        return f"{deploy_role} (ToolsBuildRoleArns of its accounts/target-account.yaml stack)"
    return parameter


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a node used twice is written twice: no &id001 anchors for a reader to chase


def render(doc: dict[str, Any]) -> str:
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)
    text = f"# Generated by `{GENERATOR}`: edit the fleet file and regenerate, never this file.\n{body}"
    if len(text.encode()) > MAX_TEMPLATE_BYTES:
        raise InvalidInput(
            "the generated template", [f"the template is over CloudFormation's {MAX_TEMPLATE_BYTES} bytes"]
        )
    return text


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _arn(service: str, resource: str) -> dict[str, str]:
    return _sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}")


def _role(role_id: str, stage: str, members: list[Project], prefix: str, deploy_role: Any | None) -> dict[str, Any]:
    """The role and its managed policies (as many as the grants need, each under IAM's size limit)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            # The log groups exist (this template makes them), so no CreateLogGroup; one path holds exactly this
            # role's projects' groups (Project.log_root).
            "Resource": _arn("logs", f"log-group:{members[0].log_root}/*:log-stream:*"),
        }
    ]
    service_reports = sorted(f"report-group/{p.name}-*" for p in members if p.service is not None)
    test_reports = sorted(logical_id("Reports", p.name) for p in members if p.service is None)
    if service_reports:
        statements.append(
            {
                "Sid": "OwnReportGroups",
                "Effect": "Allow",
                "Action": ["codebuild:CreateReportGroup", *REPORT_ACTIONS],
                "Resource": [_arn("codebuild", r) for r in service_reports],
            }
        )
    if test_reports:
        statements.append(
            {
                "Sid": "OwnReportGroups",
                "Effect": "Allow",
                "Action": list(REPORT_ACTIONS),
                "Resource": [{"Fn::GetAtt": [r, "Arn"]} for r in test_reports],
            }
        )
    repos = sorted({p.source.codecommit for p in members if isinstance(p.source, CodeCommitSource)})
    if repos:
        statements.append(
            {
                "Sid": "SourceRead",
                "Effect": "Allow",
                "Action": ["codecommit:GitPull"],
                "Resource": [_arn("codecommit", repo) for repo in repos],
            }
        )
    if any(isinstance(p.source, GitHubSource) for p in members):
        service = {"Fn::Select": [2, {"Fn::Split": [":", {"Ref": "GitHubConnectionArn"}]}]}
        statements.append(
            {
                "Sid": "GitHubConnection",
                "Effect": "Allow",
                "Action": [{"Fn::Join": ["", [service, f":{action}"]]} for action in CONNECTION_ACTIONS],
                "Resource": {"Ref": "GitHubConnectionArn"},
            }
        )
    if deploy_role is not None:
        # The deploy permissions live in the stage's deploy role (a parameter, or the fleet's `deploy_role` in another
        # account); the build assumes it (docs/onboarding.md, docs/accounts.md).
        statements.append(
            {"Sid": "AssumeDeployRole", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": deploy_role}
        )
    what = f"release-train {stage} {'builds' if deploy_role else 'tests'} (generated by {GENERATOR})"
    policies = {
        f"{role_id}Policy{k}": {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"Description": what, "PolicyDocument": _document(part)},
        }
        for k, part in enumerate(_pack(statements), start=1)
    }
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": what,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "codebuild.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        # Confused-deputy guard (CodeBuild User Guide, "Cross-service confused deputy prevention").
                        "Condition": {
                            "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                            "ArnLike": {"aws:SourceArn": _arn("codebuild", f"project/{prefix}*")},
                        },
                    }
                ],
            },
            "ManagedPolicyArns": [{"Ref": name} for name in policies],
        },
    }
    return {role_id: role, **policies}


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def _pack(statements: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The statements in as few policy documents of at most MAX_POLICY characters as their order allows: a
    statement whose resources do not fit is continued, same Sid, in the next document."""
    documents: list[list[dict[str, Any]]] = [[]]
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        current: dict[str, Any] | None = None
        for resource in resources:
            if current is None:
                current = {**statement, "Resource": []}
                documents[-1].append(current)
            current["Resource"].append(resource)
            if policy_size(_document(documents[-1])) > MAX_POLICY:
                current["Resource"].pop()
                if not current["Resource"]:
                    documents[-1].remove(current)
                current = {**statement, "Resource": [resource]}
                documents.append([current])
    return [d for d in documents if d]


def _project(project: Project, role: str, deploy_role: Any) -> dict[str, Any]:
    project_id = logical_id("Project", project.name)
    logs_id = logical_id("Logs", project.name)
    resources: dict[str, Any] = {
        logs_id: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"LogGroupName": project.log_group, "RetentionInDays": {"Ref": "LogRetentionDays"}},
        }
    }
    # STAGE here too so a build started by hand deploys where its project says; the train overrides it with the same
    # value and adds RELEASE_ID at StartBuild (EnvironmentVariablesOverride in the ASL), so RELEASE_ID is not here.
    variables: list[dict[str, Any]] = [{"Name": "STAGE", "Type": "PLAINTEXT", "Value": project.stage}]
    if project.service is None:
        reports_id = logical_id("Reports", project.name)
        resources[reports_id] = {
            "Type": "AWS::CodeBuild::ReportGroup",
            "Properties": {
                "Name": project.report_group,
                "Type": "TEST",
                "ExportConfig": {"ExportConfigType": "NO_EXPORT"},
                # Without it CloudFormation cannot delete a group that holds reports (ReportGroup DeleteReports).
                "DeleteReports": True,
            },
        }
        # A buildspec names its group with it (`reports: {$REPORT_GROUP_ARN: ...}`), so the gate's evidence lands in
        # this group, under the prefix the gate may read.
        variables.append(
            {"Name": "REPORT_GROUP_ARN", "Type": "PLAINTEXT", "Value": {"Fn::GetAtt": [reports_id, "Arn"]}}
        )
    else:
        variables.append({"Name": "SERVICE", "Type": "PLAINTEXT", "Value": project.service})
        variables.append({"Name": "DEPLOY_ROLE_ARN", "Type": "PLAINTEXT", "Value": deploy_role})
        if isinstance(deploy_role, str):
            # The profile's external_id (docs/accounts.md); an ExternalId is not a secret (IAM User Guide).
            variables.append(
                {"Name": "DEPLOY_EXTERNAL_ID", "Type": "PLAINTEXT", "Value": {"Ref": EXTERNAL_ID_PARAMETER}}
            )
    tags = [{"Key": "release-train:stage", "Value": project.stage}]
    if project.service is not None:
        tags.append({"Key": "release-train:service", "Value": project.service})
    resources[project_id] = {
        "Type": "AWS::CodeBuild::Project",
        "Properties": {
            "Name": project.name,
            "Description": (
                f"release-train: {project.service} in {project.stage}"
                if project.service
                else f"release-train: the {project.stage} tests"
            ),
            "ServiceRole": {"Fn::GetAtt": [role, "Arn"]},
            "Source": _source(project),
            "SourceVersion": project.source.branch,
            "Artifacts": {"Type": "NO_ARTIFACTS"},
            "Environment": {
                "Type": {"Fn::FindInMap": ["Images", {"Ref": "BuildArchitecture"}, "Type"]},
                "Image": {"Fn::FindInMap": ["Images", {"Ref": "BuildArchitecture"}, "Image"]},
                "ComputeType": {"Ref": "ComputeType"},
                "EnvironmentVariables": variables,
            },
            "LogsConfig": {"CloudWatchLogs": {"Status": "ENABLED", "GroupName": {"Ref": logs_id}}},
            "TimeoutInMinutes": {"Ref": "TimeoutInMinutes"},
            "QueuedTimeoutInMinutes": {"Ref": "QueuedTimeoutInMinutes"},
            "Tags": tags,
        },
    }
    return resources


def _source(project: Project) -> dict[str, Any]:
    source = project.source
    if isinstance(source, CodeCommitSource):
        location = _sub(f"https://git-codecommit.${{AWS::Region}}.${{AWS::URLSuffix}}/v1/repos/{source.codecommit}")
        return {"Type": "CODECOMMIT", "Location": location, "BuildSpec": project.buildspec}
    return {
        "Type": "GITHUB",
        "Location": f"https://github.com/{source.github}.git",
        # SourceAuth: CODECONNECTIONS with the connection's ARN (CodeBuild API reference, SourceAuth).
        "Auth": {"Type": "CODECONNECTIONS", "Resource": {"Ref": "GitHubConnectionArn"}},
        "BuildSpec": project.buildspec,
    }


def policy_size(value: Any) -> int:
    """An upper bound of the policy's size as IAM counts it (no whitespace): `${AWS::...}` is longer than what it
    stands for; a Ref or GetAtt (an ARN) counts as 256 characters."""

    def bound(node: Any) -> Any:
        if isinstance(node, dict):
            if "Ref" in node or "Fn::GetAtt" in node or "Fn::Join" in node:
                return "x" * 256
            if "Fn::Sub" in node:
                return node["Fn::Sub"]
            return {k: bound(v) for k, v in node.items()}
        if isinstance(node, list):
            return [bound(v) for v in node]
        return node

    return len(json.dumps(bound(value), separators=(",", ":")))


class ProjectRegistry(Protocol):
    """The sandbox's CodeBuild emulator (trainctl/sandbox/codebuild.py), as far as creating projects goes."""

    def register_project(
        self, project: str, stage: str, service: str | None, queued_timeout_minutes: int | None = None
    ) -> None: ...


def register_projects(
    registry: ProjectRegistry, doc: dict[str, Any], parameters: Mapping[str, str] | None = None
) -> list[str]:
    """Create in the sandbox the projects a generated template declares, as CloudFormation would: moto's
    CloudFormation has no AWS::CodeBuild::Project ("No Moto CloudFormation support", moto 5.2.5), so the template's
    own resources are read. `parameters` override the template's defaults. Returns the project names."""
    given = dict(parameters or {})

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            name = node["Ref"]
            return given.get(name, doc["Parameters"][name].get("Default"))
        return node

    created = []
    for resource in doc["Resources"].values():
        if resource["Type"] != "AWS::CodeBuild::Project":
            continue
        props = resource["Properties"]
        variables = {v["Name"]: value(v["Value"]) for v in props["Environment"]["EnvironmentVariables"]}
        tags = {t["Key"]: t["Value"] for t in props.get("Tags", [])}
        registry.register_project(
            props["Name"],
            str(variables["STAGE"]),
            tags.get("release-train:service"),
            int(value(props["QueuedTimeoutInMinutes"])),
        )
        created.append(str(props["Name"]))
    return created


@fleet.command("projects")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--prefix",
    default="train-",
    show_default=True,
    help="the stack's ProjectPrefix: every project must start with it",
)
@click.option(
    "-o",
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="write the template to FILE (default: stdout)",
)
@click.option("--buildspec", default="buildspec.yml", show_default=True, help="the services' buildspec path")
@click.option("--tests-codecommit", default=None, metavar="REPO", help="the test projects' CodeCommit repository")
@click.option("--tests-github", default=None, metavar="OWNER/REPO", help="the test projects' GitHub repository")
@click.option("--tests-branch", default="main", show_default=True, help="the test projects' branch")
@click.option("--tests-buildspec", default="buildspec.yml", show_default=True, help="the test projects' buildspec path")
def fleet_projects(
    path: Path,
    prefix: str,
    out_file: Path | None,
    buildspec: str,
    tests_codecommit: str | None,
    tests_github: str | None,
    tests_branch: str,
    tests_buildspec: str,
) -> None:
    """A CloudFormation template with every CodeBuild project the train starts for the fleet in PATH."""
    if out_file is not None and out_file.name in {"table", "json"}:
        # Elsewhere -o is --output table|json; here it names a file, so `-o json` is almost surely a slip.
        raise click.UsageError(f"-o/--out names the template's file, not a format: did you mean `--out ./{out_file}`?")
    with guarded():
        parsed = parse_fleet(path.read_text(), str(path))
        tests = tests_source(tests_codecommit, tests_github, tests_branch)
        found = projects(parsed, prefix, tests, buildspec, tests_buildspec, str(path))
        text = render(template(parsed, found, prefix, str(path)))
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.write_text(text)
        note(f"wrote {len(found)} projects of fleet {parsed.fleet} to {out_file}; deploy it with sam deploy")
