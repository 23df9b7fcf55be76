"""Guardrails: the release policy the platform team sets as stack parameters, which no fleet file can weaken.

The fleet file decides what rides and how (waves, stages, bakes, approvers); the stack decides the floor under it.
PlanRelease applies these to the fleet it loads, `trainctl fleet push` to the fleet it uploads (reading the stack's
parameters), `trainctl fleet validate --stack` likewise: one function, so every path refuses the same fleet.

Stage rules match stage names case-insensitively; the last-stage rules match whatever the last stage is called, so
renaming `prod` to `production` escapes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase

from pydantic import TypeAdapter, ValidationError

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import Fleet

# The stack parameters (template.yaml) and, for PlanRelease, the environment variables that carry them.
PARAMETERS = {
    "ProjectPrefix": "PROJECT_PREFIX",
    "FleetNamePrefix": "FLEET_NAME_PREFIX",
    "MinimumFinalBake": "MINIMUM_FINAL_BAKE",
    "RequireApprovalFor": "REQUIRE_APPROVAL_FOR",
    "MinimumBake": "MINIMUM_BAKE",
    "ApproverBoundary": "APPROVER_BOUNDARY",
    "AllowBreakGlass": "ALLOW_BREAK_GLASS",
    "AllowedTargetAccounts": "ALLOWED_TARGET_ACCOUNTS",
    "HookExtraApplicationPattern": "HOOK_EXTRA_APPLICATION_PATTERN",
}
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)  # ISO 8601, as the fleet file's bakes
_ACCOUNT = re.compile(r"^\d{12}$")
_ITEM = re.compile(r"^\s*([A-Za-z0-9-]+)\s*=\s*(\S+)\s*$")


@dataclass(frozen=True)
class Guardrails:
    project_prefix: str = "train-"
    fleet_name_prefix: str = "svc-"
    minimum_final_bake: timedelta = timedelta(hours=1)
    require_approval_for: frozenset[str] = frozenset()  # lower-case stage names
    minimum_bake: Mapping[str, timedelta] = field(default_factory=dict)  # lower-case stage name -> bake
    approver_boundary: tuple[str, ...] = ()
    allow_break_glass: bool = False
    # Accounts a stage may name (`stages[].account`) besides this one; empty: this account only (docs/accounts.md).
    allowed_target_accounts: frozenset[str] = frozenset()
    account: str = ""
    # More CodeDeploy applications the train and the hooks may read and stop (IAM wildcards * and ?; ADR 0005).
    hook_extra_application_pattern: str = ""

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], account: str) -> Guardrails:
        """From the stack's parameter values (DescribeStacks, or PlanRelease's environment), `account` filling the
        default approver boundary (this account's IAM and STS principals). Malformed values name the parameter."""
        problems: list[str] = []

        def duration(name: str, text: str) -> timedelta:
            try:
                return _DURATION.validate_python(text)
            except ValidationError:
                problems.append(f"{name}: '{text}' is not an ISO 8601 duration like PT1H or P2D")
                return timedelta(0)

        minimum_bake: dict[str, timedelta] = {}
        for item in _split(params.get("MinimumBake", "")):
            match = _ITEM.match(item)
            if match is None:
                problems.append(f"MinimumBake: '{item}' is not stage=duration (e.g. staging=P2D)")
                continue
            minimum_bake[match.group(1).lower()] = duration("MinimumBake", match.group(2))
        boundary = tuple(_split(params.get("ApproverBoundary", ""))) or (
            f"arn:aws:iam::{account}:*",
            f"arn:aws:sts::{account}:*",
        )
        targets = _split(params.get("AllowedTargetAccounts", ""))
        problems += [
            f"AllowedTargetAccounts: '{t}' is not a 12-digit AWS account id" for t in targets if not _ACCOUNT.match(t)
        ]
        rails = cls(
            project_prefix=params.get("ProjectPrefix", "train-"),
            fleet_name_prefix=params.get("FleetNamePrefix", "svc-"),
            minimum_final_bake=duration("MinimumFinalBake", params.get("MinimumFinalBake", "PT1H")),
            require_approval_for=frozenset(s.lower() for s in _split(params.get("RequireApprovalFor", ""))),
            minimum_bake=minimum_bake,
            approver_boundary=boundary,
            allow_break_glass=params.get("AllowBreakGlass", "false").strip().lower() == "true",
            allowed_target_accounts=frozenset(targets),
            account=account,
            hook_extra_application_pattern=params.get("HookExtraApplicationPattern", "").strip(),
        )
        if problems:
            raise InvalidInput("stack guardrail parameters", problems)
        return rails

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Guardrails:
        params = {name: env[var] for name, var in PARAMETERS.items() if var in env}
        return cls.from_parameters(params, env.get("ACCOUNT_ID", ""))

    def violations(self, fleet: Fleet) -> list[str]:
        """Every rule the fleet breaks, each naming the field and the stack parameter that sets the rule."""
        problems: list[str] = []
        last = len(fleet.stages) - 1
        for k, stage in enumerate(fleet.stages):
            name = stage.name.lower()
            where = f"stages[{k}] ({stage.name})"
            if k == last and not stage.approval.required:
                problems.append(
                    f"{where}.approval.required: the last stage always requires an approval (stack guardrail)"
                )
            elif name in self.require_approval_for and not stage.approval.required:
                problems.append(f"{where}.approval.required: stack parameter RequireApprovalFor names {stage.name}")
            floor = max(
                self.minimum_final_bake if k == last else timedelta(0), self.minimum_bake.get(name, timedelta(0))
            )
            if stage.bake < floor:
                rule = (
                    "MinimumFinalBake (the last stage)"
                    if k == last and floor == self.minimum_final_bake
                    else (f"MinimumBake {stage.name}")
                )
                problems.append(f"{where}.bake: {_iso(stage.bake)} is shorter than {rule} = {_iso(floor)}")
            if stage.approval.required:
                for approver in fleet.approvers_for(stage):
                    if not any(fnmatchcase(approver, bound) for bound in self.approver_boundary):
                        problems.append(
                            f"{where}.approval.approvers: '{approver}' is outside the stack's ApproverBoundary "
                            f"{list(self.approver_boundary)}"
                        )
        for k, stage in enumerate(fleet.stages):
            # The train's own account is always allowed: a stage without `account` runs there anyway.
            if stage.account is not None and stage.account not in self.allowed_target_accounts | {self.account}:
                bound = sorted(self.allowed_target_accounts) or "empty: this account only"
                problems.append(
                    f"stages[{k}] ({stage.name}).account: '{stage.account}' is outside the stack's "
                    f"AllowedTargetAccounts ({bound})"
                )
        for where, project in fleet.projects():
            if not project.startswith(self.project_prefix):
                problems.append(
                    f"{where}: '{project}' does not start with ProjectPrefix '{self.project_prefix}' (the state "
                    "machine may start only those projects)"
                )
        for i, service in enumerate(fleet.services):
            for stage in fleet.stages:
                for name in fleet.functions_for(service, stage.name):
                    if not name.startswith(self.fleet_name_prefix):
                        problems.append(
                            f"services[{i}].deploy.functions ({stage.name}): '{name}' does not start with "
                            f"FleetNamePrefix '{self.fleet_name_prefix}' (the train may read and move only those "
                            "functions' aliases, the hooks check only those)"
                        )
                ecs = fleet.ecs_for(service, stage.name)
                if ecs is not None and not self._application_allowed(ecs.application):
                    extra = self.hook_extra_application_pattern
                    problems.append(
                        f"services[{i}].deploy.application ({stage.name}): '{ecs.application}' neither starts with "
                        f"FleetNamePrefix '{self.fleet_name_prefix}' nor matches HookExtraApplicationPattern "
                        f"'{extra}' (the train could not stop its deployment on a cancel, nor the hooks read it: "
                        "AccessDenied); rename it or set HookExtraApplicationPattern (e.g. AppECS-*)"
                    )
        return problems

    def _application_allowed(self, application: str) -> bool:
        """As IAM matches the template's `application:${FleetNamePrefix}*` and `application:${Pattern}` ARNs: `*` any
        run of characters, `?` one (IAM User Guide, "IAM JSON policy elements: Resource"); the parameter's
        AllowedPattern has no `[`, so fnmatch's glob is IAM's."""
        pattern = self.hook_extra_application_pattern
        return application.startswith(self.fleet_name_prefix) or bool(pattern and fnmatchcase(application, pattern))

    def check(self, fleet: Fleet, source: str) -> None:
        problems = self.violations(fleet)
        if problems:
            raise InvalidInput(f"{source} (against the stack's guardrails)", problems)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _iso(value: timedelta) -> str:
    return str(_DURATION.dump_python(value, mode="json"))
