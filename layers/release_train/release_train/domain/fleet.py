"""The fleet: which services ride the train, in which waves, through which stages.

Pure: parsing and validation only. Loaded from `fleet.yaml` by trainctl and from the config bucket by PlanRelease;
both go through `parse_fleet`, so a file the CLI accepts is exactly a file the train accepts.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from release_train.domain.errors import InvalidInput

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
_NAMES_A_FIELD = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*: ")


class _Model(BaseModel):
    # Unknown keys are typos until proven otherwise: reject them so `wave_s: 2` does not silently mean wave 1.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeCommitSource(_Model):
    codecommit: Annotated[str, Field(min_length=1, max_length=100, description="repository name")]
    branch: str = "main"


class GitHubSource(_Model):
    github: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/repo")]
    branch: str = "main"
    token_secret: str | None = Field(default=None, description="Secrets Manager secret id holding a GitHub token")


Source = CodeCommitSource | GitHubSource


class Deploy(_Model):
    """What the service's build deploys that the train watches: Lambda functions behind an alias (SAM
    `AutoPublishAlias`), shifted through CodeDeploy with the shared hooks in the canary stages."""

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


class Service(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    source: Source
    wave: Annotated[int, Field(ge=1, le=50)] = 1
    project: str | dict[str, str] | None = Field(
        default=None,
        description="CodeBuild project: a pattern with {service} and {stage}, or a map stage -> project name",
    )
    deploy: Deploy | None = None


class AlarmSelector(_Model):
    prefix: str | None = None
    tag: dict[str, str] | None = Field(default=None, description="alarms carrying all these tags")

    @model_validator(mode="after")
    def _one_way(self) -> AlarmSelector:
        if not self.prefix and not self.tag:
            raise ValueError("give `prefix` or `tag` (or leave `alarms` out for no alarm evidence)")
        return self


class Approval(_Model):
    required: bool = False
    timeout: timedelta = timedelta(hours=24)

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        # Step Functions task timeouts are capped at one year; an approval older than a week is a forgotten one.
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1 minute and 7 days (ISO 8601 like PT24H, or seconds)")
        return value


class Stage(_Model):
    name: Annotated[str, Field(pattern=NAME)]
    bake: timedelta = timedelta(0)
    test_project: str | None = None
    approval: Approval = Approval()
    alarms: AlarmSelector | None = None

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
    webhook_secret: str | None = Field(
        default=None, description="Secrets Manager secret id holding a Slack-compatible incoming webhook URL"
    )


class Defaults(_Model):
    project: str = "{service}-{stage}"
    # Builds at once within a wave: bounded by the account's CodeBuild concurrency and inline Map's 40.
    build_concurrency: Annotated[int, Field(ge=1, le=40)] = 10


def _default_stages() -> tuple[Stage, ...]:
    return (Stage(name="staging", bake=timedelta(days=2)), Stage(name="prod"))


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
    services: Annotated[tuple[Service, ...], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _consistent(self) -> Fleet:
        _no_duplicates("services", [s.name for s in self.services])
        _no_duplicates("stages", [s.name for s in self.stages])
        stage_names = {s.name for s in self.stages}
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
            for stage in self.stages:
                name = self.project_for(service, stage.name)
                if not _PROJECT_NAME.match(name):
                    raise ValueError(f"services[{i}].project: '{name}' is not a valid CodeBuild project name")
            if service.deploy is not None:
                self._check_deploy(i, service, service.deploy, stage_names)
        return self

    def _check_deploy(self, i: int, service: Service, deploy: Deploy, stage_names: set[str]) -> None:
        unknown = sorted(set(deploy.canary_stages or ()) - stage_names)
        if unknown:
            raise ValueError(
                f"services[{i}].deploy.canary_stages: unknown stages {unknown}; stages are {sorted(stage_names)}"
            )
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
        """The Lambda functions the service's `stage` deploy moves (empty without a `deploy` block)."""
        if service.deploy is None:
            return []
        return [fill(f, service=service.name, stage=stage) for f in service.deploy.functions]

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
        path = ".".join(str(p) for p in problem["loc"] if not str(p).startswith(("function-", "tagged-union")))
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
