"""`trainctl fleet projects`: every CodeBuild project the train starts, as one CloudFormation template made from the
fleet (or, with --output-dir, a parent and its child stacks' templates for fleets beyond one template's limits), so
onboarding a service is one fleet entry plus deploying this template (docs/onboarding.md).

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
# --output-dir: the parent template and its children. A child's TemplateURL is a path relative to the parent, which
# `sam deploy` and `aws cloudformation package` upload to S3 and replace ("TemplateURL property for the
# AWS::CloudFormation::Stack resource", https://docs.aws.amazon.com/cli/latest/reference/cloudformation/package.html).
PARENT_FILE = "projects.yaml"
CHILD_FILE = re.compile(r"^projects-\d{2}\.yaml$")
# Hash buckets of services, one child stack each (empty buckets make no child). Fixed, never derived from the fleet's
# size: a service's bucket depends on its name alone, so adding or removing a service never moves another. A move is
# what must never happen: CloudFormation creates the project in the new child before deleting it from the old one,
# and the second project of the same name fails (AlreadyExists). Fixed-size sorted groups would shift every service
# after an inserted name into the next group. 64 leave room for the hash's unevenness: 2,000 services are ~31 a child
# (45 in the fullest for the bench fleet), and a child holds 125 services with 2 stages, 83 with 3, 25 with 10; the
# fullest child fills first, so about 60% of 64 full children is what a fleet may have (2,000 with up to 4 stages).
GROUPS = 64


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
    parameters, deploy_roles = _parameters(parsed, found, source)
    resources, outputs, problems, compacted = _roles(parsed, found, prefix, deploy_roles)
    for project in found:
        role = _role_id(project)
        resources.update(_project(project, {"Fn::GetAtt": [role, "Arn"]}, deploy_roles[project.stage]))
    if len(resources) > MAX_RESOURCES:
        problems.insert(
            0,
            f"services: {len(found)} projects make {len(resources)} resources, over CloudFormation's "
            f"{MAX_RESOURCES} per template; write a parent and child templates with --output-dir DIR",
        )
    if problems:
        raise InvalidInput(source, problems)
    return _doc(parsed, prefix, parameters, resources, outputs, compacted)


def nested(parsed: Fleet, found: list[Project], prefix: str, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parent template (parameters, the roles, the stages' test projects, one AWS::CloudFormation::Stack per
    non-empty bucket of services) and its children by file name (each its services' projects and log groups, the
    roles' ARNs as parameters)."""
    parameters, deploy_roles = _parameters(parsed, found, source)
    resources, outputs, problems, compacted = _roles(parsed, found, prefix, deploy_roles)
    groups: dict[int, list[Project]] = {}
    for project in found:
        if project.service is None:
            resources.update(_project(project, {"Fn::GetAtt": [_role_id(project), "Arn"]}, None))
        else:
            groups.setdefault(bucket(project.service), []).append(project)
    children: dict[str, Any] = {}
    for number, members in sorted(groups.items()):
        name = f"projects-{number:02d}.yaml"
        child_resources: dict[str, Any] = {}
        roles: set[str] = set()
        for project in members:
            role = _role_id(project)
            roles.add(role)
            child_resources.update(_project(project, {"Ref": role + "Arn"}, deploy_roles[project.stage]))
        used = _refs(child_resources)
        child_parameters = {k: v for k, v in parameters.items() if k in used}
        passed: dict[str, Any] = {k: {"Ref": k} for k in child_parameters}
        for role in sorted(roles):
            child_parameters[role + "Arn"] = {"Type": "String", "Description": f"The {role} ARN (the parent's)."}
            passed[role + "Arn"] = {"Fn::GetAtt": [role, "Arn"]}
        services = len({p.service for p in members})
        if len(child_resources) > MAX_RESOURCES:
            problems.append(
                f"services: child {name} would hold {services} services, {len(child_resources)} resources, over "
                f"CloudFormation's {MAX_RESOURCES} per template ({GROUPS} children of {MAX_RESOURCES} hold about "
                f"{GROUPS * (MAX_RESOURCES // (2 * len(parsed.stages))) * 3 // 5} services with {len(parsed.stages)} "
                "stages); split the fleet into several fleets"
            )
        children[name] = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": f"release-train: CodeBuild projects of fleet {parsed.fleet}, part {number:02d} (generated "
            f"by {GENERATOR} with {PARENT_FILE}; edit the fleet and regenerate, never this file)",
            "Parameters": dict(sorted(child_parameters.items())),
            "Mappings": {"Images": IMAGES},
            "Resources": dict(sorted(child_resources.items())),
        }
        resources[f"Projects{number:02d}"] = {
            "Type": "AWS::CloudFormation::Stack",
            # cfn-lint's W3002 says a local TemplateURL needs `package`: it is meant to (`sam deploy` packages).
            "Metadata": {"cfn-lint": {"config": {"ignore_checks": ["W3002"]}}},
            "Properties": {"TemplateURL": f"./{name}", "Parameters": dict(sorted(passed.items()))},
        }
    if len(resources) > MAX_RESOURCES:
        problems.insert(
            0,
            f"services: the parent template makes {len(resources)} resources, over CloudFormation's {MAX_RESOURCES} "
            "per template; split the fleet into several fleets",
        )
    if problems:
        raise InvalidInput(source, problems)
    return _doc(parsed, prefix, parameters, resources, outputs, compacted), children


def bucket(service: str) -> int:
    """The child (1..GROUPS) holding the service's projects: from its name's SHA-256 alone (see GROUPS)."""
    return int(hashlib.sha256(service.encode()).hexdigest()[:8], 16) % GROUPS + 1


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["Ref"]} if isinstance(node.get("Ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _role_id(project: Project) -> str:
    return _camel(project.stage) + ("TestRole" if project.service is None else "BuildRole")


def _parameters(parsed: Fleet, found: list[Project], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The template's parameters, and each stage's deploy role (its parameter's Ref, or the fleet's ARN)."""
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
    return parameters, deploy_roles


def _roles(
    parsed: Fleet, found: list[Project], prefix: str, deploy_roles: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str], dict[str, int]]:
    """Per stage its build role and its test role with their policies; the roles' outputs; the problems; and the
    roles whose grants had to be compacted to name prefixes (role id -> characters kept)."""
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    problems: list[str] = []
    compacted: dict[str, int] = {}
    test_reports = sorted(logical_id("Reports", p.name) for p in found if p.service is None)
    for stage in [s.name for s in parsed.stages]:
        for tests in (False, True):
            members = [p for p in found if p.stage == stage and (p.service is None) == tests]
            if not members:
                continue
            role = _role_id(members[0])
            deploy_role = None if tests else deploy_roles[stage]
            role_resources, keep = _role(role, stage, members, prefix, deploy_role, test_reports)
            policies = len(role_resources) - 1
            if policies > MAX_POLICIES_PER_ROLE:
                problems.append(
                    f"services: the {'test' if tests else 'build'} role of stage {stage} would need {policies} "
                    f"managed policies of {MAX_POLICY} characters even with its grants compacted to name prefixes, "
                    f"over IAM's {MAX_POLICIES_PER_ROLE} per role; split the fleet into several fleets"
                )
            if keep is not None:
                compacted[role] = keep
            resources.update(role_resources)
            outputs[role + "Arn"] = {
                "Description": f"The {stage} {'test' if tests else 'build'} role"
                + ("" if tests else f": {_trusted_by(deploy_roles[stage], parameter_id(stage))} must trust it"),
                "Value": {"Fn::GetAtt": [role, "Arn"]},
            }
    return resources, outputs, problems, compacted


def _doc(
    parsed: Fleet,
    prefix: str,
    parameters: dict[str, Any],
    resources: dict[str, Any],
    outputs: dict[str, Any],
    compacted: dict[str, int],
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "Fleet": parsed.fleet,
        "ProjectPrefix": prefix,
        "Stages": [s.name for s in parsed.stages],
    }
    if compacted:
        metadata["CompactedGrants"] = dict(sorted(compacted.items()))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"release-train: the CodeBuild projects of fleet {parsed.fleet} (generated by {GENERATOR}; "
        "edit the fleet and regenerate, never this file)",
        "Metadata": {"ReleaseTrain": metadata},
        "Parameters": parameters,
        "Mappings": {"Images": IMAGES},
        "Resources": dict(sorted(resources.items())),
        "Outputs": dict(sorted(outputs.items())),
    }


def _trusted_by(deploy_role: Any, parameter: str) -> str:
    if isinstance(deploy_role, str):
        return f"{deploy_role} (ToolsBuildRoleArns of its accounts/target-account.yaml stack)"
    return parameter


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]  # libyaml: ~5x faster
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


def _role(
    role_id: str, stage: str, members: list[Project], prefix: str, deploy_role: Any | None, test_reports: list[str]
) -> tuple[dict[str, Any], int | None]:
    """The role and its managed policies (as many as the grants need, each under IAM's size limit), and None, or how
    many characters of the names its grants keep where one ARN per repository and project would not fit in IAM's
    MAX_POLICIES_PER_ROLE policies (from about 340 CodeCommit services): then `svc-0*` stands for every repository
    and project starting so, the longest prefixes that fit, and a Deny keeps the stages' test report groups, the gate's
    evidence, out of the builds' reach."""
    names = [p.name for p in members if p.service is not None]
    repos = sorted({p.source.codecommit for p in members if isinstance(p.source, CodeCommitSource)})
    longest = max((len(n) for n in [*names, *repos]), default=0)
    budget = MAX_POLICIES_PER_ROLE * MAX_POLICY
    packed: list[list[dict[str, Any]]] = []
    keep: int | None = None
    for keep in [None, *range(longest, 0, -1)]:
        statements = _statements(members, prefix, deploy_role, test_reports, keep)
        if sum(policy_size(s) for s in statements) > budget:
            continue  # cannot fit: no need to pack (the sum is a lower bound of the packed policies' sizes)
        packed = _pack(statements)
        if len(packed) <= MAX_POLICIES_PER_ROLE:
            break
    else:
        packed = _pack(statements)  # the most compact there is, still too large: the caller names the limit
    what = f"release-train {stage} {'builds' if deploy_role else 'tests'} (generated by {GENERATOR})"
    policies = {
        f"{role_id}Policy{k}": {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"Description": what, "PolicyDocument": _document(part)},
        }
        for k, part in enumerate(packed, start=1)
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
    return {role_id: role, **policies}, keep


def _patterns(names: list[str], keep: int | None, lead: str, suffix: str, tail: str = "") -> list[str]:
    """`name + suffix` each, or with `keep`: `lead` (which every name starts with) and the next `keep` characters of
    each name, then '*' (so `train-svc-0001-staging` and repository `svc-0001` both keep `svc-000`); a name ending in
    `tail` keeps it (`train-svc-000*-staging-*`), so a stage's builds still reach no other stage's report groups."""
    if keep is None:
        return sorted({n + suffix for n in names})
    cut = len(lead) + keep
    patterns = set()
    for n in names:
        if len(n) <= cut:
            patterns.add(n + suffix)
        elif tail and n.endswith(tail) and len(n) - len(tail) > cut:
            patterns.add(n[:cut] + "*" + tail + suffix)
        else:
            patterns.add(n[:cut] + "*")
    return sorted(patterns)


def _statements(
    members: list[Project], prefix: str, deploy_role: Any | None, test_reports: list[str], keep: int | None
) -> list[dict[str, Any]]:
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
    service_reports = _patterns(
        [p.name for p in members if p.service is not None], keep, prefix, "-*", f"-{members[0].stage}"
    )
    own_tests = sorted(logical_id("Reports", p.name) for p in members if p.service is None)
    if service_reports:
        statements.append(
            {
                "Sid": "OwnReportGroups",
                "Effect": "Allow",
                "Action": ["codebuild:CreateReportGroup", *REPORT_ACTIONS],
                "Resource": [_arn("codebuild", f"report-group/{r}") for r in service_reports],
            }
        )
        if keep is not None and test_reports:
            # A prefix may match a test project's group; the gate trusts what is there, so builds never write it.
            statements.append(
                {
                    "Sid": "NotTheTestReports",
                    "Effect": "Deny",
                    "Action": ["codebuild:CreateReportGroup", *REPORT_ACTIONS],
                    "Resource": [{"Fn::GetAtt": [r, "Arn"]} for r in test_reports],
                }
            )
    if own_tests:
        statements.append(
            {
                "Sid": "OwnReportGroups",
                "Effect": "Allow",
                "Action": list(REPORT_ACTIONS),
                "Resource": [{"Fn::GetAtt": [r, "Arn"]} for r in own_tests],
            }
        )
    repos = sorted({p.source.codecommit for p in members if isinstance(p.source, CodeCommitSource)})
    if repos:
        statements.append(
            {
                "Sid": "SourceRead",
                "Effect": "Allow",
                "Action": ["codecommit:GitPull"],
                "Resource": [_arn("codecommit", repo) for repo in _patterns(repos, keep, "", "")],
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
    return statements


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def _pack(statements: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The statements in as few policy documents of at most MAX_POLICY characters as their order allows: a
    statement whose resources do not fit is continued, same Sid, in the next document. Sizes are added up as
    policy_size would count the document (compact JSON), so packing stays linear in the grants."""
    empty = policy_size(_document([]))
    documents: list[list[dict[str, Any]]] = [[]]
    size = empty
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        bare = policy_size({**statement, "Resource": []})
        current: dict[str, Any] | None = None
        for resource in resources:
            cost = policy_size(resource)
            if current is not None and size + cost + 1 <= MAX_POLICY:
                current["Resource"].append(resource)
                size += cost + 1
                continue
            opening = bare + cost + (1 if documents[-1] else 0)
            if size + opening > MAX_POLICY and documents[-1]:
                documents.append([])
                size, opening = empty, bare + cost
            current = {**statement, "Resource": [resource]}
            documents[-1].append(current)
            size += opening
    return [d for d in documents if d]


def _project(project: Project, role_arn: Any, deploy_role: Any) -> dict[str, Any]:
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
            "ServiceRole": role_arn,
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
        self,
        project: str,
        stage: str,
        service: str | None,
        queued_timeout_minutes: int | None = None,
        environment: Mapping[str, str] | None = None,
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
            # what the sandbox can resolve (a GetAtt of a resource it does not create is left out)
            {k: str(v) for k, v in variables.items() if isinstance(v, str | int)},
        )
        created.append(str(props["Name"]))
    return created


def register_stack(
    registry: ProjectRegistry,
    doc: dict[str, Any],
    children: Mapping[str, dict[str, Any]] | None = None,
    parameters: Mapping[str, str] | None = None,
) -> list[str]:
    """register_projects on a template and on each child its AWS::CloudFormation::Stack resources name (by file, as
    `nested` makes them), each child given the parameters its parent passes (what the sandbox cannot resolve, the
    roles' ARNs, is left out: no project's registration reads it)."""
    given = dict(parameters or {})
    created = register_projects(registry, doc, given)
    for resource in doc["Resources"].values():
        if resource["Type"] != "AWS::CloudFormation::Stack":
            continue
        props = resource["Properties"]
        passed: dict[str, str] = {}
        for name, node in props.get("Parameters", {}).items():
            if isinstance(node, dict) and "Ref" in node:
                resolved = given.get(node["Ref"], doc["Parameters"].get(node["Ref"], {}).get("Default"))
                if resolved is not None:
                    passed[name] = str(resolved)
        created += register_projects(registry, (children or {})[props["TemplateURL"].removeprefix("./")], passed)
    return created


def sandbox_templates(parsed: Fleet, prefix: str, tests_repo: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The template(s) `trainctl fleet projects` makes for the fleet, test projects from CodeCommit `tests_repo`:
    one template where it fits, a parent and its children (--output-dir) where not, as an operator would deploy."""
    tests = CodeCommitSource(codecommit=tests_repo, branch="main")
    found = projects(parsed, prefix, tests, "buildspec.yml", "buildspec.yml", "the sandbox's fleet")
    # A project and its log group each, a report group per test project: a lower bound of one template's resources.
    if 2 * len(found) + sum(p.service is None for p in found) > MAX_RESOURCES:
        return nested(parsed, found, prefix, "the sandbox's fleet")
    try:
        return template(parsed, found, prefix, "the sandbox's fleet"), {}
    except InvalidInput as exc:
        if not any(f"over CloudFormation's {MAX_RESOURCES} per template" in p for p in exc.problems):
            raise
    return nested(parsed, found, prefix, "the sandbox's fleet")


def write_nested(out_dir: Path, doc: dict[str, Any], children: Mapping[str, dict[str, Any]]) -> list[Path]:
    """Write the parent and children into `out_dir`; a child file this command wrote before for a bucket now empty
    is removed, so the directory holds exactly what the parent names. Every file is rendered (and its size checked)
    before any is written."""
    texts = {PARENT_FILE: render(doc), **{name: render(child) for name, child in children.items()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out_dir.iterdir()):
        if CHILD_FILE.match(stale.name) and stale.name not in texts and _generated(stale):
            stale.unlink()
    written = []
    for name, text in texts.items():
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    return written


def _generated(path: Path) -> bool:
    with path.open() as handle:
        return handle.readline().startswith(f"# Generated by `{GENERATOR}`")


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
@click.option(
    "--output-dir",
    "out_dir",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    default=None,
    help=f"write a parent template ({PARENT_FILE}) and child stacks' templates (projects-NN.yaml) to DIR: for fleets "
    f"over one template's {MAX_RESOURCES} resources",
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
    out_dir: Path | None,
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
    if out_file is not None and out_dir is not None:
        raise click.UsageError("-o/--out and --output-dir: give one (--output-dir for a parent and child templates)")
    with guarded():
        parsed = parse_fleet(path.read_text(), str(path))
        tests = tests_source(tests_codecommit, tests_github, tests_branch)
        found = projects(parsed, prefix, tests, buildspec, tests_buildspec, str(path))
        if out_dir is not None:
            doc, children = nested(parsed, found, prefix, str(path))
            write_nested(out_dir, doc, children)
        else:
            doc = template(parsed, found, prefix, str(path))
            text = render(doc)
    compacted = doc["Metadata"]["ReleaseTrain"].get("CompactedGrants", {})
    if compacted:
        note(
            f"too many repositories and projects for one ARN each in IAM's {MAX_POLICIES_PER_ROLE} policies of "
            f"{MAX_POLICY} characters: {', '.join(sorted(compacted))} grant name prefixes instead "
            "(Metadata.ReleaseTrain.CompactedGrants: characters kept)"
        )
    if out_dir is not None:
        note(
            f"wrote {len(found)} projects of fleet {parsed.fleet} to {out_dir}: {PARENT_FILE} and {len(children)} "
            f"child templates; deploy it with sam deploy -t {out_dir / PARENT_FILE} (it uploads the children)"
        )
    elif out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.write_text(text)
        note(f"wrote {len(found)} projects of fleet {parsed.fleet} to {out_file}; deploy it with sam deploy")
