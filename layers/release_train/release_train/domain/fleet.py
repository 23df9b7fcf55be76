"""The fleet: which services ride the train, in which waves, through which stages.

Pure: parsing and validation only. Loaded from `fleet.yaml` by trainctl and from the config bucket by PlanRelease;
both go through `parse_fleet`, so a file the CLI accepts is exactly a file the train accepts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from release_train.domain.errors import InvalidInput
from release_train.domain.scale import CHUNK_SIZE, MAX_SERVICES, estimate

NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-_]{1,254}$")
# Lambda FunctionName (a bare name, 1-64 characters) and alias Name (not all digits), from the Lambda API reference.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ALIAS_NAME = r"^[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*$"  # 1-128 characters, not all digits
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# The predefined CodeDeploy configurations for Lambda (CodeDeploy User Guide, "Deployment configurations on an
# AWS Lambda compute platform"); the fleet names them without the CodeDeployDefault.Lambda prefix.
LAMBDA_DEPLOYMENT_CONFIGS = (
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
)
# The predefined CodeDeploy configurations for Amazon ECS (CodeDeploy User Guide, "Deployment configurations on an
# Amazon ECS compute platform", https://docs.aws.amazon.com/codedeploy/latest/userguide/deployment-configurations.html);
# the fleet names them without the CodeDeployDefault. prefix.
ECS_DEPLOYMENT_CONFIGS = (
    "ECSAllAtOnce",
    "ECSCanary10Percent5Minutes",
    "ECSCanary10Percent15Minutes",
    "ECSLinear10PercentEvery1Minutes",
    "ECSLinear10PercentEvery3Minutes",
)
# ECS cluster, service and container names: up to 255 letters, numbers, hyphens and underscores (CreateCluster,
# CreateService, ContainerDefinition `name` in the ECS API reference); {service} and {stage} are filled in first.
_ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# CodeDeploy application and deployment group names: 1-100 characters (CreateApplication, CreateDeploymentGroup).
_CODEDEPLOY_NAME = re.compile(r"^[^\s]{1,100}$")
_NAMES_A_FIELD = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*: ")


class _Model(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them so `wave_s: 2` does not silently mean wave 1.
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_branch(name: str) -> str:
    """A branch name git accepts (`git check-ref-format --branch`, rules in git-check-ref-format(1)); anything else
    is a typo or an attempt to make the URL or API call mean another branch."""
    problems = []
    if not 1 <= len(name.encode()) <= 255:
        problems.append("1-255 bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or any(c in name for c in " ~^:?*[\\"):
        problems.append("no spaces, control characters or any of ~ ^ : ? * [ \\")
    if ".." in name or "@{" in name or name == "@" or "//" in name:
        problems.append("no '..', '@{', '//' and not '@'")
    if name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock")):
        problems.append("may not start with '-' or '/' nor end with '/', '.' or '.lock'")
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problems.append("no path component may start with '.' or end with '.lock'")
    if problems:
        raise ValueError(f"'{name}' is not a git branch name ({'; '.join(problems)})")
    return name


# Secrets Manager secret names (CreateSecret `Name`: 1-512 of letters, digits and /_+=.@-) or a secret ARN; the train's
# roles may read only secrets named under release-train/ (template.yaml), so any other name would fail at run time.
SECRET_PREFIX = "release-train/"
_SECRET_ID = re.compile(
    r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:)?(?P<name>[A-Za-z0-9/_+=.@-]{1,512})$"
)


def check_secret_id(value: str) -> str:
    match = _SECRET_ID.match(value)
    if match is None:
        raise ValueError(f"'{value}' is not a Secrets Manager secret name or ARN (letters, digits and /_+=.@- only)")
    if not match.group("name").startswith(SECRET_PREFIX):
        raise ValueError(f"'{value}' must be named under {SECRET_PREFIX} (the train's roles may read only those)")
    return value


Branch = Annotated[str, AfterValidator(check_branch)]
SecretId = Annotated[str, AfterValidator(check_secret_id)]


class CodeCommitSource(_Model):
    # CodeCommit repository names: 1-100 letters, digits, '.', '_' and '-' (CreateRepository API reference).
    codecommit: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="repository name")]
    branch: Branch = "main"


class GitHubSource(_Model):
    github: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/repo")]

    @field_validator("github")
    @classmethod
    def _no_dot_segments(cls, value: str) -> str:
        if any(part in {".", ".."} for part in value.split("/")):
            raise ValueError(f"'{value}': owner and repository may not be '.' or '..' (they are URL path segments)")
        return value

    branch: Branch = "main"
    # Required: heads are resolved with GitHub's GraphQL API, which answers only authenticated requests (ADR 0008).
    token_secret: SecretId = Field(description="Secrets Manager secret id holding a GitHub token (GraphQL needs one)")


def _source_kind(value: Any) -> str | None:
    if isinstance(value, CodeCommitSource | GitHubSource):
        return "codecommit" if isinstance(value, CodeCommitSource) else "github"
    if isinstance(value, dict):
        return "codecommit" if "codecommit" in value else "github" if "github" in value else None
    return None


# Tagged by the key it carries, so an error names that source's field instead of both alternatives'.
Source = Annotated[
    Annotated[CodeCommitSource, Tag("codecommit")] | Annotated[GitHubSource, Tag("github")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="give either `codecommit: <repository>` or `github: <owner/repo>`",
    ),
]


class Deploy(_Model):
    """What the service's build deploys that the train watches: Lambda functions behind an alias (SAM
    `AutoPublishAlias`), shifted through CodeDeploy with the shared hooks in the canary stages."""

    platform: Literal["lambda"] = Field(default="lambda", description="lambda (the default) or ecs (EcsDeploy)")
    functions: Annotated[
        tuple[str, ...],
        Field(min_length=1, max_length=50, description="function names; {service} and {stage} are filled in"),
    ]
    alias: Annotated[str, Field(pattern=ALIAS_NAME, max_length=128)] = "live"
    traffic: str = Field(default="Canary10Percent5Minutes", description="CodeDeploy configuration in the canary stages")
    canary_stages: tuple[str, ...] | None = Field(
        default=None, description="stages whose deploy shifts traffic with the hooks (default: the last stage)"
    )

    @field_validator("traffic")
    @classmethod
    def _predefined(cls, value: str) -> str:
        short = value.removeprefix("CodeDeployDefault.Lambda")
        if short not in LAMBDA_DEPLOYMENT_CONFIGS:
            raise ValueError(
                f"must be one of CodeDeploy's Lambda configurations: {', '.join(LAMBDA_DEPLOYMENT_CONFIGS)}"
            )
        return short

    @property
    def deployment_config(self) -> str:
        return f"CodeDeployDefault.Lambda{self.traffic}"


class EcsDeploy(_Model):
    """An ECS service deployed blue/green by CodeDeploy (examples/orders-ecs): the build registers a task definition
    and creates a deployment whose AppSpec names the shared hooks; in the canary stages traffic shifts from the
    running (blue) task set to the replacement (green) one through the load balancer's listeners. Names are patterns
    with {service} and {stage}; the defaults are the ones examples/orders-ecs/template.yaml gives its stack
    svc-<service>-<stage>. The train moves no alias for it: CodeDeploy's own rollback is the ECS service's rollback."""

    platform: Literal["ecs"]
    cluster: str = Field(default="svc-{service}-{stage}", description="ECS cluster name")
    service: str = Field(default="{service}", description="ECS service name (deploymentController CODE_DEPLOY)")
    container: str = Field(default="{service}", description="container the target groups reach (AppSpec ContainerName)")
    port: Annotated[int, Field(ge=1, le=65535, description="its container port (AppSpec ContainerPort)")]
    application: str = Field(
        default="svc-{service}-{stage}", description="CodeDeploy application (ComputePlatform ECS)"
    )
    deployment_group: str = Field(default="svc-{service}-{stage}-{service}", description="CodeDeploy deployment group")
    traffic: str = Field(
        default="ECSCanary10Percent5Minutes", description="CodeDeploy configuration in the canary stages"
    )
    canary_stages: tuple[str, ...] | None = Field(
        default=None, description="stages whose deploy shifts traffic with the hooks (default: the last stage)"
    )

    @field_validator("traffic")
    @classmethod
    def _predefined(cls, value: str) -> str:
        short = value.removeprefix("CodeDeployDefault.")
        if short not in ECS_DEPLOYMENT_CONFIGS:
            raise ValueError(f"must be one of CodeDeploy's ECS configurations: {', '.join(ECS_DEPLOYMENT_CONFIGS)}")
        return short

    @property
    def deployment_config(self) -> str:
        return f"CodeDeployDefault.{self.traffic}"

    # field -> (pattern it must match once filled in, what it is)
    NAMES: ClassVar[dict[str, tuple[re.Pattern[str], str]]] = {
        "cluster": (_ECS_NAME, "an ECS cluster name (1-255 letters, digits, '-' or '_')"),
        "service": (_ECS_NAME, "an ECS service name (1-255 letters, digits, '-' or '_')"),
        "container": (_ECS_NAME, "an ECS container name (1-255 letters, digits, '-' or '_')"),
        "application": (_CODEDEPLOY_NAME, "a CodeDeploy application name (1-100 characters, no spaces)"),
        "deployment_group": (_CODEDEPLOY_NAME, "a CodeDeploy deployment group name (1-100 characters, no spaces)"),
    }


@dataclass(frozen=True)
class EcsSite:
    """An ECS deploy's names in one stage, filled in."""

    cluster: str
    service: str
    container: str
    port: int
    application: str
    deployment_group: str

    @property
    def deployment_key(self) -> str:
        return ecs_deployment_key(self.application, self.deployment_group)


def ecs_deployment_key(application: str, deployment_group: str) -> str:
    """How the clean-up names an ECS service's CodeDeploy deployments (adapters/deployments.py `in_flight`): by
    application and deployment group, in the form of the hooks' checks key (hook_targets.EcsTarget.checks_key)."""
    return f"ecs/{application}/{deployment_group}"


def _deploy_platform(value: Any) -> str | None:
    if isinstance(value, Deploy | EcsDeploy):
        return value.platform
    if isinstance(value, dict):
        platform = value.get("platform", "lambda")
        return platform if platform in ("lambda", "ecs") else None
    return None


_DEPLOY_TAGS = ("lambda", "ecs")
# Tagged by `platform` (absent: lambda, so Lambda fleets stay as they are), so an error names that kind's field.
AnyDeploy = Annotated[
    Annotated[Deploy, Tag("lambda")] | Annotated[EcsDeploy, Tag("ecs")],
    Discriminator(
        _deploy_platform,
        custom_error_type="deploy_platform",
        custom_error_message="`platform` must be lambda (the default: functions behind an alias) or ecs",
    ),
]


class Service(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    source: Source
    wave: Annotated[int, Field(ge=1, le=50)] = 1
    project: str | dict[str, str] | None = Field(
        default=None,
        description="CodeBuild project: a pattern with {service} and {stage}, or a map stage -> project name",
    )
    deploy: AnyDeploy | None = None

    @property
    def lambda_deploy(self) -> Deploy | None:
        """The deploy block when it declares Lambda functions behind an alias (what the alias journal follows)."""
        return self.deploy if isinstance(self.deploy, Deploy) else None

    @property
    def ecs_deploy(self) -> EcsDeploy | None:
        return self.deploy if isinstance(self.deploy, EcsDeploy) else None


class AlarmSelector(_Model):
    prefix: str | None = None
    tag: dict[str, str] | None = Field(default=None, description="alarms carrying all these tags")

    @model_validator(mode="after")
    def _one_way(self) -> AlarmSelector:
        if not self.prefix and not self.tag:
            raise ValueError("give `prefix` or `tag` (or leave `alarms` out for no alarm evidence)")
        return self


# Who may answer an approval: IAM principal ARN patterns, `*` the only wildcard, matched against the caller's ARN as
# STS reports it (GetCallerIdentity `Arn`; a function URL's requestContext.authorizer.iam.userArn), e.g.
# arn:aws:sts::123456789012:assumed-role/ReleaseManager/* or arn:aws:iam::123456789012:role/ReleaseManager (which
# matches that role's sessions). The stack's ApproverBoundary bounds them (guardrails.py).
_APPROVER = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}|\*):[A-Za-z0-9+=,.@_/*-]{1,512}$")


def check_approver(value: str) -> str:
    if not _APPROVER.match(value):
        raise ValueError(
            f"'{value}' is not an IAM principal ARN pattern (arn:aws:iam::<account>:role/<name>, "
            "arn:aws:sts::<account>:assumed-role/<role>/<session> or …:user/<name>; '*' is the only wildcard)"
        )
    return value


Approver = Annotated[str, AfterValidator(check_approver)]
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


def matching_approver(patterns: tuple[str, ...], caller_arn: str) -> str | None:
    """The first pattern that admits the caller, or None. A role session also answers as its role's ARN (an STS
    assumed-role ARN carries the role's name but not its path, so a pattern naming a role path cannot match it)."""
    names = [caller_arn]
    session = _ASSUMED_ROLE.match(caller_arn)
    if session:
        partition, account, role = session.groups()
        names.append(f"arn:{partition}:iam::{account}:role/{role}")
    return next((p for p in patterns if any(fnmatchcase(name, p) for name in names)), None)


class Approval(_Model):
    required: bool = False
    timeout: timedelta = timedelta(hours=24)
    approvers: Annotated[tuple[Approver, ...], Field(max_length=20)] = Field(
        default=(), description="IAM principal ARN patterns who may answer (default: defaults.approvers)"
    )

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        # Step Functions task timeouts are capped at one year; an approval older than a week is a forgotten one.
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1 minute and 7 days (ISO 8601 like PT24H, or seconds)")
        return value


# An IAM role ARN (IAM User Guide, "IAM identifiers": role names 1-64 of [\w+=,.@-], paths /.../ up to 512 characters).
_ROLE_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?:[\x21-\x7e]{1,510}/)?[\w+=,.@-]{1,64}$", re.ASCII
)


def check_role_arn(value: str) -> str:
    if not _ROLE_ARN.match(value):
        raise ValueError(
            "not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>, as accounts/target-account.yaml "
            "outputs it)"
        )
    return value


RoleArn = Annotated[str, AfterValidator(check_role_arn)]


class Stage(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    bake: timedelta = timedelta(0)
    test_project: str | None = None
    approval: Approval = Approval()
    alarms: AlarmSelector | None = None
    # A stage in another AWS account (docs/accounts.md); without `account` the stage is the train's own account.
    account: Annotated[str, Field(pattern=r"^\d{12}$", description="12-digit AWS account id")] | None = None
    deploy_role: RoleArn | None = Field(
        default=None, description="role in `account` the stage's builds assume to deploy (DeployRoleArn output)"
    )

    @field_validator("account", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f"quote the account id ('{value:012d}'): YAML reads an unquoted number, which loses leading zeros"
            )
        return value

    def check_account(self, k: int) -> None:
        """The deploy role must live in the stage's account (called by Fleet, so the error names `stages[k]`)."""
        if self.deploy_role is None:
            return
        match = _ROLE_ARN.match(self.deploy_role)
        role_account = match.group("account") if match else None
        if self.account is None:
            raise ValueError(
                f"stages[{k}].account: stage {self.name} names a deploy_role in account {role_account}; give "
                f"`account: '{role_account}'` too"
            )
        if role_account != self.account:
            raise ValueError(
                f"stages[{k}].deploy_role: the role is in account {role_account}, not the stage's account "
                f"{self.account}; a stage's builds deploy with a role in its own account"
            )

    @field_validator("bake")
    @classmethod
    def _bake_bounded(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=14):
            raise ValueError("must be between 0 and 14 days (ISO 8601 like P2D, or seconds)")
        return value


class FreezeWindow(_Model):
    start: datetime
    end: datetime
    reason: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _ordered(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. 2026-12-20T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


class Notifications(_Model):
    webhook_secret: SecretId | None = Field(
        default=None, description="Secrets Manager secret id holding a Slack-compatible incoming webhook URL"
    )


class Defaults(_Model):
    # Carries the stack's default ProjectPrefix (train-): the state machine may start only projects with the prefix.
    project: str = "train-{service}-{stage}"
    # Builds at once within a wave: bounded by the account's CodeBuild concurrency and inline Map's 40.
    build_concurrency: Annotated[int, Field(ge=1, le=40)] = 10
    approvers: Annotated[tuple[Approver, ...], Field(max_length=20)] = Field(
        default=(), description="who may answer an approval in stages that do not name their own approvers"
    )


def _default_stages() -> tuple[Stage, ...]:
    # The stack's guardrails require an approval and a minimum bake (default PT1H) on the last stage.
    return (
        Stage(name="staging", bake=timedelta(days=2)),
        Stage(name="prod", bake=timedelta(hours=1), approval=Approval(required=True)),
    )


class Fleet(_Model):
    fleet: Annotated[str, Field(pattern=NAME)]
    defaults: Defaults = Defaults()
    stages: Annotated[tuple[Stage, ...], Field(min_length=1, max_length=10)] = Field(default_factory=_default_stages)
    freeze_windows: tuple[FreezeWindow, ...] = ()
    notifications: Notifications = Notifications()
    on_prod_failure: Literal["stop", "rollback"] = Field(
        default="stop",
        description="when a release fails or is cancelled after the last stage began deploying: leave what is live "
        "(stop) or point the aliases this release moved back to their previous versions, newest wave first (rollback)",
    )
    services: Annotated[tuple[Service, ...], Field(min_length=1, max_length=MAX_SERVICES)]

    @model_validator(mode="after")
    def _consistent(self) -> Fleet:
        _no_duplicates("services", [s.name for s in self.services])
        _no_duplicates("stages", [s.name for s in self.stages])
        stage_names = {s.name for s in self.stages}
        for k, stage in enumerate(self.stages):
            stage.check_account(k)
            if stage.approval.required and not self.approvers_for(stage):
                raise ValueError(
                    f"stages[{k}].approval.approvers: stage {stage.name} requires an approval but names nobody who "
                    "may answer; list IAM principal ARN patterns here or in defaults.approvers"
                )
        for i, service in enumerate(self.services):
            if isinstance(service.project, dict):
                missing = stage_names - service.project.keys()
                extra = service.project.keys() - stage_names
                if missing or extra:
                    raise ValueError(
                        f"services[{i}].project: needs exactly one project per stage {sorted(stage_names)}"
                        + (f"; missing {sorted(missing)}" if missing else "")
                        + (f"; unknown stages {sorted(extra)}" if extra else "")
                    )
            if service.deploy is not None:
                self._check_deploy(i, service, service.deploy, stage_names)
        self._check_projects(stage_names)
        self._check_limits()
        return self

    def _check_limits(self) -> None:
        """A release of this fleet must stay within half of Step Functions' history and payload limits (the bench
        measures the same formula, domain/scale.py)."""
        by_wave: dict[int, list[Service]] = {}
        for service in sorted(self.services, key=lambda s: s.name):  # chunks take a wave's services by name
            by_wave.setdefault(service.wave, []).append(service)
        per_stage = [{wave: len(members) for wave, members in by_wave.items()} for _ in self.stages]
        # LoadChunk's answer, {"builds": [{"service": .., "project": .., "commit": <40 hex>}, ..]}, in JSON bytes.
        entry = len(json.dumps({"service": "", "project": "", "commit": "0" * 40})) + len(", ")
        payloads = []
        for stage in self.stages:
            for members in by_wave.values():
                sizes = [entry + len(s.name) + len(self.project_for(s, stage.name)) for s in members]
                for start in range(0, len(sizes), CHUNK_SIZE):
                    payloads.append(len('{"builds": []}') + sum(sizes[start : start + CHUNK_SIZE]))
        problems = estimate(per_stage, payloads).problems()
        if problems:
            raise ValueError("services: " + "; ".join(problems))

    def _check_projects(self, stage_names: set[str]) -> None:
        """Every (service, stage) builds with its own project, and no project can be another stage's: a project is
        what deploys, so a staging entry naming the prod project would deploy prod before any bake or approval."""
        owner: dict[str, str] = {}  # project -> the first field that named it

        def claim(project: str, field: str, what: str) -> None:
            if project in owner:
                raise ValueError(
                    f"{field}: project '{project}' ({what}) is already {owner[project]}; each needs its own"
                )
            owner[project] = what

        for k, stage in enumerate(self.stages):
            if stage.test_project is not None:
                if not _PROJECT_NAME.match(stage.test_project):
                    raise ValueError(
                        f"stages[{k}].test_project: '{stage.test_project}' is not a valid CodeBuild project name"
                    )
                claim(stage.test_project, f"stages[{k}].test_project", f"the {stage.name} test project")
        for i, service in enumerate(self.services):
            service_tokens = set(_tokens(service.name))
            for stage in self.stages:
                field = f"services[{i}].project"
                name = self.project_for(service, stage.name)
                if not _PROJECT_NAME.match(name):
                    raise ValueError(f"{field}: '{name}' is not a valid CodeBuild project name")
                # A name that says it is another stage's (orders-prod for staging) is refused; names that mention no
                # stage (orders-stg, orders-prd) are the fleet's business.
                tokens = set(_tokens(name)) - service_tokens
                other = sorted((tokens & stage_names) - {stage.name})
                if other and stage.name not in tokens:
                    raise ValueError(
                        f"{field}: '{name}' for stage {stage.name} names stage {other[0]}; a stage's project must "
                        f"not be another stage's"
                    )
                claim(name, field, f"the {stage.name} project of {service.name}")

    def approvers_for(self, stage: Stage) -> tuple[str, ...]:
        return stage.approval.approvers or self.defaults.approvers

    def projects(self) -> list[tuple[str, str]]:
        """Every (field, project) the train may start: service builds per stage, then the stages' test projects."""
        found = [
            (f"services[{i}].project ({stage.name})", self.project_for(service, stage.name))
            for i, service in enumerate(self.services)
            for stage in self.stages
        ]
        found += [(f"stages[{k}].test_project", s.test_project) for k, s in enumerate(self.stages) if s.test_project]
        return found

    def _check_deploy(self, i: int, service: Service, deploy: Deploy | EcsDeploy, stage_names: set[str]) -> None:
        unknown = sorted(set(deploy.canary_stages or ()) - stage_names)
        if unknown:
            raise ValueError(
                f"services[{i}].deploy.canary_stages: unknown stages {unknown}; stages are {sorted(stage_names)}"
            )
        if isinstance(deploy, EcsDeploy):
            for stage in self.stages:
                for name, (rule, what) in EcsDeploy.NAMES.items():
                    where = f"services[{i}].deploy.{name}"
                    value = fill(getattr(deploy, name), service=service.name, stage=stage.name, where=where)
                    if not rule.match(value):
                        raise ValueError(f"{where}: '{value}' ({stage.name}) is not {what}")
            return
        for j, pattern in enumerate(deploy.functions):
            for stage in self.stages:
                name = fill(
                    pattern, service=service.name, stage=stage.name, where=f"services[{i}].deploy.functions[{j}]"
                )
                if not _FUNCTION_NAME.match(name):
                    raise ValueError(
                        f"services[{i}].deploy.functions[{j}]: '{name}' is not a Lambda function name "
                        "(1-64 letters, digits, '-' or '_')"
                    )
        _no_duplicates(f"services[{i}].deploy.functions", list(deploy.functions))

    def project_for(self, service: Service, stage: str) -> str:
        if isinstance(service.project, dict):
            return service.project[stage]
        return fill(service.project or self.defaults.project, service=service.name, stage=stage, where="project")

    def functions_for(self, service: Service, stage: str) -> list[str]:
        """The Lambda functions the service's `stage` deploy moves (empty without a Lambda `deploy` block: an ECS
        service has no function and no alias)."""
        deploy = service.lambda_deploy
        if deploy is None:
            return []
        return [fill(f, service=service.name, stage=stage) for f in deploy.functions]

    def ecs_for(self, service: Service, stage: str) -> EcsSite | None:
        """The ECS service the service's `stage` deploy replaces, names filled in (None unless `platform: ecs`)."""
        deploy = service.ecs_deploy
        if deploy is None:
            return None
        names = {n: fill(getattr(deploy, n), service=service.name, stage=stage) for n in EcsDeploy.NAMES}
        return EcsSite(port=deploy.port, **names)

    def canary_stages(self, service: Service) -> tuple[str, ...]:
        if service.deploy is None:
            return ()
        return service.deploy.canary_stages or (self.stages[-1].name,)

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def freeze_at(self, moment: datetime) -> FreezeWindow | None:
        return next((w for w in self.freeze_windows if w.covers(moment)), None)

    def next_open_time(self, moment: datetime) -> datetime:
        """The first instant at or after `moment` outside every freeze window (windows may chain or overlap)."""
        current = moment
        while (window := self.freeze_at(current)) is not None:
            current = window.end
        return current

    def waves(self) -> list[int]:
        return sorted({s.wave for s in self.services})


def fill(pattern: str, *, service: str, stage: str, where: str = "pattern") -> str:
    """`{service}` and `{stage}` filled in; any other placeholder is an error (never `str.format`, which would
    evaluate `{service.__class__}` or fail on `{0}`)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "service":
            return service
        if name == "stage":
            return stage
        raise ValueError(f"{where}: unknown placeholder {{{name}}} in '{pattern}' (only {{service}} and {{stage}})")

    filled = _PLACEHOLDER.sub(value, pattern)
    if "{" in filled or "}" in filled:
        raise ValueError(f"{where}: unbalanced brace in '{pattern}' (only {{service}} and {{stage}} are placeholders)")
    return filled


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[-_]", name.lower()) if t]


def _no_duplicates(field: str, names: list[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"{field}: names must be unique, repeated: {dupes}")


def format_validation_error(error: ValidationError) -> list[str]:
    """One line per problem: `field.path: what is wrong (got: value)` — the path a person can find in the file."""
    lines = []
    problems = error.errors()
    locs = [tuple(p["loc"]) for p in problems]
    for problem in problems:
        loc = tuple(problem["loc"])
        # pydantic also calls a list "too short" when one of its items failed: noise, the item's own error says why.
        if problem["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs):
            continue
        parts = [str(p) for p in problem["loc"] if not str(p).startswith(("function-", "tagged-union"))]
        # The deploy union's tag (lambda/ecs) is not a key of the file: services.0.deploy.port, not deploy.ecs.port.
        parts = [p for k, p in enumerate(parts) if not (k and parts[k - 1] == "deploy" and p in _DEPLOY_TAGS)]
        path = ".".join(parts)
        message = problem["msg"].removeprefix("Value error, ")
        got = problem.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got: {got!r})"
        if not path and _NAMES_A_FIELD.match(message):
            lines.append(f"{message}{shown}")  # a cross-field check already starts with the field path
        else:
            lines.append(f"{path or '<top level>'}: {message}{shown}")
    return lines


def parse_fleet(text: str, source: str = "fleet.yaml") -> Fleet:
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise InvalidInput(source, ["<top level>: expected a mapping with `fleet`, `stages` and `services`"])
    try:
        return Fleet.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(source, format_validation_error(exc)) from exc


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
