"""Run one whole release train on the embedded emulator and report what happened.

The runner only wires things together: the stack from template.yaml (stack.py), the emulated services (emulators.py
and one module per service), the scripted people (people.py), all on one event-driven virtual clock (vtime.py). The
train starts as the schedule starts it (the schedule's target input from template.yaml, at the scenario's virtual
schedule time); the simulation ends when nothing runs and nothing is due any more, and every participant thread has
ended. Outcomes never depend on how fast this machine is.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from release_train.domain.errors import InvalidInput
from release_train.domain.fleet import CodeCommitSource, Fleet, GitHubSource, parse_fleet
from release_train.domain.guardrails import Guardrails
from trainctl.sandbox import accounts, emulators, moto_fixes, vtime
from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.scenario import Scenario

REGION = "us-east-1"
TRANSITION_PRICE_USD = 0.025 / 1000
ASL = Path("statemachines") / "release_train.asl.json"
CHUNK_ASL = Path("statemachines") / "build_chunk.asl.json"  # the release's child executions (ADR 0007)


@dataclass
class Observed:
    type: str
    state: str | None
    input: dict[str, Any] | None
    virtual_time: datetime
    details: dict[str, Any] = field(default_factory=dict)  # the history event's details (trainctl/live_view.py)


@dataclass
class SimulationResult:
    release_id: str | None
    status: str
    reason: str
    execution_status: str
    execution_error: str | None
    stages: list[dict[str, Any]]
    history_events: int
    state_transitions: int
    virtual_duration_s: float
    wall_s: float
    estimated_cost_usd: float
    builds_started: int
    builds_throttled: int
    lock_held_after: bool
    second_start: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    approval_answers: list[dict[str, Any]] = field(default_factory=list)  # every scripted answer, accepted or refused
    events: list[dict[str, Any]] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None
    failed_state: str | None = None  # the state the ledger names for a FAILED or BLOCKED release
    cleanup_redeliveries: list[dict[str, Any] | None] = field(default_factory=list)  # EventBridge delivering again
    builds: list[dict[str, Any]] = field(default_factory=list)  # every emulated CodeBuild build, as it ended
    fleet_releases: list[dict[str, Any]] = field(default_factory=list)  # every release of the fleet in the ledger
    deployments: list[dict[str, Any]] = field(default_factory=list)
    invocations: dict[str, int] = field(default_factory=dict)
    invocations_by_version: dict[str, dict[str, int]] = field(default_factory=dict)  # function -> version -> count
    # every execution of every state machine: arn, state_machine, version, status, history_events,
    # largest_payload {bytes, state}
    executions: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> service -> commit running, or "unknown"
    baseline_release: str | None = None  # the release "what changed" falls back to
    live_detail: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # how the train knows, versions

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def _sandbox_env() -> Iterator[None]:
    """Fake credentials and region: the sandbox must never reach a real account, whatever the shell has."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("AWS_"):
            os.environ.pop(key)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "AWS_SESSION_TOKEN": "sandbox",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# The train's functions that read a stage in its own account (docs/accounts.md, "The train's side").
TARGET_READERS = (
    "LoadWaveFunction",
    "RecordWaveFunction",
    "EvaluateGateFunction",
    "RecordFailureFunction",
    "CleanupExecutionFunction",
)
SANDBOX_EXTERNAL_ID = "release-train-sandbox"


def target_accounts(fleet: Fleet) -> list[str]:
    """The accounts besides the tools account the fleet's stages name, sorted."""
    return sorted({s.account for s in fleet.stages if s.account and s.account != ACCOUNT})


def account_parameters(fleet: Fleet) -> dict[str, str]:
    """The tools stack's parameters for a fleet with stages in other accounts, as an operator sets them
    (docs/accounts.md step 3); none for a one-account fleet. A scenario's `parameters` still win."""
    targets = target_accounts(fleet)
    if not targets:
        return {}
    return {"AllowedTargetAccounts": ",".join(targets), "TargetAccountExternalId": SANDBOX_EXTERNAL_ID}


def state_names(root: Path) -> set[str]:
    """Every state name of the state machines (the release's and its chunks'), nested ones included: scenarios may
    name any of them."""
    names: set[str] = set()

    def walk(states: dict[str, Any]) -> None:
        for name, state in states.items():
            names.add(name)
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))
            for key in ("ItemProcessor", "Iterator"):
                if key in state:
                    walk(state[key].get("States", {}))

    for path in (ASL, CHUNK_ASL):
        walk(json.loads((root / path).read_text())["States"])
    return names


def simulate(
    fleet_path: Path,
    scenario: Scenario,
    root: Path,
    on_event: Callable[[Observed], None] | None = None,
    pace: float | None = None,
    log_path: Path | None = None,
    scenario_source: str = "scenario",
) -> SimulationResult:
    wall_start = time.perf_counter()
    with open_world(fleet_path, scenario, root, on_event, pace, log_path, scenario_source) as run:
        return run.run(wall_start)


@contextlib.contextmanager
def open_world(
    fleet_path: Path,
    scenario: Scenario,
    root: Path,
    on_event: Callable[[Observed], None] | None = None,
    pace: float | None = None,
    log_path: Path | None = None,
    scenario_source: str = "scenario",
) -> Iterator[_Run]:
    """The emulated account with its clock and emulators, for `simulate` (which runs one train to its end) and
    `sandbox serve` (which starts it and serves the world over HTTP). Bad input raises InvalidInput before anything
    exists."""
    from trainctl.sandbox.stack import template_parameters

    fleet = parse_fleet(fleet_path.read_text(), str(fleet_path))  # reject a bad fleet before anything exists
    problems = scenario.problems(fleet, state_names(root))
    parameters = template_parameters(root)
    stack_parameters = {**account_parameters(fleet), **scenario.parameters}
    problems += [
        f"parameters.{name}: template.yaml has no such parameter; it has {sorted(parameters)}"
        for name in scenario.parameters
        if name not in parameters
    ]
    if problems:
        raise InvalidInput(scenario_source, problems)
    # As `trainctl fleet push` does against a deployed stack: the fleet meets the stack's guardrails first.
    Guardrails.from_parameters(template_parameters(root, stack_parameters), ACCOUNT).check(fleet, str(fleet_path))
    moto_fixes.apply()
    from moto import mock_aws

    from trainctl.sandbox.lambda_runtime import registry

    scheduler = vtime.Scheduler(scenario.schedule_time, pace)
    log_file = (log_path or Path(os.devnull)).open("w")
    registry.reset()
    accounts.reset()
    registry.log.target = log_file
    try:
        with (
            _sandbox_env(),
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
            moto_fixes.virtual_time(scheduler),
        ):
            world = emulators.World(scenario, fleet, scheduler, REGION)
            emulators.activate(world)
            try:
                yield _Run(fleet, scenario, root, world, on_event, stack_parameters)
            finally:
                world.sources.stop_github()
                world.ecs.stop()
                emulators.activate(None)
    finally:
        registry.log.target = None
        log_file.close()


class _Run:
    def __init__(
        self,
        fleet: Fleet,
        scenario: Scenario,
        root: Path,
        world: emulators.World,
        on_event: Callable[[Observed], None] | None,
        parameters: dict[str, str] | None = None,
    ) -> None:
        import boto3

        self.fleet, self.scenario, self.root, self.world, self.on_event = fleet, scenario, root, world, on_event
        self.parameters = parameters if parameters is not None else dict(scenario.parameters)
        self.clock = world.clock
        self.sfn = boto3.client("stepfunctions")
        self.url_base: str | None = None

    # --- set-up: the account the train runs in ----------------------------------------------------------------------

    def _setup(self) -> None:
        import boto3

        from release_train.adapters.clock import Clock
        from release_train.adapters.fleet_store import FleetStore
        from release_train.adapters.ledger import Ledger
        from release_train.domain.release import Hold
        from trainctl.sandbox.people import People
        from trainctl.sandbox.sources import GitHubAnswer
        from trainctl.sandbox.stack import create_stack

        github_url = self.world.sources.start_github()
        self.stack = create_stack(
            self.root, parameters={**self.parameters, "GitHubApiUrl": github_url}, url_base=self.url_base
        )
        self._target_accounts()
        fleet, scenario, world = self.fleet, self.scenario, self.world
        changed = {s.name for s in fleet.services} if scenario.changed == "all" else set(scenario.changed)
        baseline = {}
        secrets: set[str] = set()
        for service in fleet.services:
            head = scenario.commit(service.name, "head")
            baseline[service.name] = scenario.commit(service.name, "previous") if service.name in changed else head
            source = service.source
            if isinstance(source, CodeCommitSource):
                world.sources.branches[(source.codecommit, source.branch)] = head
            elif isinstance(source, GitHubSource):
                world.sources.github_heads[(source.github, source.branch)] = head
                script = scenario.github.get(service.name, [])
                world.sources.script_github(
                    source.github,
                    source.branch,
                    *(a if isinstance(a, int) else GitHubAnswer(**a.model_dump()) for a in script),
                )
                if source.token_secret and source.token_secret not in secrets:
                    secrets.add(source.token_secret)
                    boto3.client("secretsmanager").create_secret(
                        Name=source.token_secret, SecretString="ghp_sandbox_token"
                    )
        # The projects as an operator creates them: the template(s) `trainctl fleet projects` makes for this fleet and
        # the stack's ProjectPrefix (docs/onboarding.md), test projects from a CodeCommit repository, the scenario's
        # queued timeout as the template's parameter. moto's CloudFormation cannot create them: register_stack does.
        from trainctl.projects import EXTERNAL_ID_PARAMETER, register_stack, sandbox_templates
        from trainctl.sandbox.stack import template_parameters

        stack_parameters = template_parameters(self.root, self.parameters)
        doc, children = sandbox_templates(fleet, stack_parameters["ProjectPrefix"], "release-train-tests")
        given = {
            "QueuedTimeoutInMinutes": str(scenario.codebuild.queued_timeout_minutes),
            EXTERNAL_ID_PARAMETER: stack_parameters["TargetAccountExternalId"],
        }
        register_stack(world.codebuild, doc, children, given)
        world.codedeploy.prepare(
            self.root, self.stack.physical("PreTrafficFunction"), self.stack.physical("PostTrafficFunction"), baseline
        )
        world.ecs.prepare(  # ECS services: cluster, load balancer, the running task set on loopback (ecs.py)
            self.root, self.stack.physical("PreTrafficFunction"), self.stack.physical("PostTrafficFunction"), baseline
        )

        self.ledger = Ledger(boto3.resource("dynamodb").Table(self.stack.physical("LedgerTable")))
        self.ledger.set_baseline(fleet.fleet, "2026-W47", baseline)
        for hold in scenario.holds:
            self.ledger.put_hold(fleet.fleet, Hold(hold.scope, hold.reason, hold.by), Clock().now())

        fleet_doc = fleet.model_dump(mode="json", exclude_defaults=False)
        fleet_doc["freeze_windows"] = [
            *fleet_doc["freeze_windows"],
            *(w.model_dump(mode="json") for w in scenario.freeze_windows),
        ]
        if scenario.on_prod_failure is not None:
            fleet_doc["on_prod_failure"] = scenario.on_prod_failure
        if scenario.freeze_now:
            day = scenario.schedule_time.replace(hour=0, minute=0, second=0, microsecond=0)
            fleet_doc["freeze_windows"] = [
                *fleet_doc["freeze_windows"],
                {"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat(), "reason": "scenario freeze"},
            ]
        FleetStore(boto3.client("s3"), self.stack.physical("ConfigBucket")).push(yaml.safe_dump(fleet_doc))

        for alarm in scenario.alarms:
            world.alarms.create_healthy(alarm.name, world.stage_account(alarm.stage))
        for stage in fleet.stages:
            prefix = stage.alarms.prefix if stage.alarms else None
            if prefix and not any(a.name.startswith(prefix) for a in scenario.alarms):
                # a healthy stage still has alarms to read, in its own account
                world.alarms.create_healthy(f"{prefix}errors", stage.account)

        self.people = People(world, self.stack, self.ledger, self._start, self._schedule_input)
        self.parents: dict[str, str] = {}  # child execution ARN -> the execution that started it
        from trainctl.sandbox.lambda_runtime import registry

        registry.preload()

    def _target_accounts(self) -> None:
        """Each account a stage names gets accounts/target-account.yaml, deployed as docs/accounts.md says: the same
        stack name, trusting the tools stack's function roles and the projects' build roles, with the ExternalId."""
        from trainctl.sandbox.stack import create_target_stack, template_parameters

        targets = target_accounts(self.fleet)
        if not targets:
            return
        given = template_parameters(self.root, self.parameters)
        iam = self.world.client("iam")
        function_roles = [
            iam.get_role(RoleName=physical)["Role"]["Arn"]
            for logical, (kind, physical) in sorted(self.stack.resources.items())
            if kind == "AWS::IAM::Role" and logical.removesuffix("Role") in TARGET_READERS
        ]
        for account in targets:
            create_target_stack(
                self.root,
                account,
                self.stack.name,
                {
                    "ToolsAccountId": ACCOUNT,
                    "ExternalId": given["TargetAccountExternalId"],
                    "ToolsBuildRoleArns": f"arn:aws:iam::{ACCOUNT}:role/{given['ProjectPrefix']}build",
                    "ToolsFunctionRoleArns": ",".join(function_roles),
                    "DeployPolicyArns": "arn:aws:iam::aws:policy/AWSCloudFormationFullAccess",
                    "TrainRoleName": given["TargetAccountRoleName"],
                    "FleetNamePrefix": given["FleetNamePrefix"],
                },
                REGION,
            )

    # --- the run ------------------------------------------------------------------------------------------------

    def begin(self, url_base: str | None = None) -> None:
        """Create the account, then start the train as the schedule would. `url_base`: `sandbox serve`'s loopback
        address, where the stack's function URLs are served."""
        from trainctl.sandbox.observer import observers

        self.url_base = url_base
        with self.clock.holding():  # the account exists before anything happens in it
            self._setup()
        observers.append(self._observe)
        try:
            with self.clock.holding():
                if self.scenario.break_glass is not None:
                    self.people.main_arn = self.people.break_glass(self.scenario.break_glass)
                else:
                    execution_input = self.scenario.execution_input or self._schedule_input()
                    self.people.main_arn = self._start(execution_input)
        except BaseException:
            self.end()
            raise

    def end(self) -> None:
        from trainctl.sandbox.observer import observers

        observers.remove(self._observe)

    def run(self, wall_start: float) -> SimulationResult:
        self.begin()
        try:
            self.clock.wait_idle()
        finally:
            self.end()
        if self.world.defects:
            raise emulators.SandboxDefect("the sandbox answered out of contract:\n" + "\n".join(self.world.defects))
        left = self.clock.blocked_threads()
        described = dict(self.sfn.describe_execution(executionArn=self.people.main_arn))
        if described["status"] == "RUNNING" or left:
            raise vtime.SandboxStalled(
                f"the simulated world stopped moving with the execution {described['status']} and these "
                f"participants waiting for something no one will do: {left}"
            )
        return self._result(described, wall_start)

    def _schedule_input(self, at: datetime | None = None) -> dict[str, Any]:
        text = json.dumps(self.stack.schedule_input)
        when = (at or self.scenario.schedule_time).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return dict(json.loads(text.replace("<aws.scheduler.scheduled-time>", when)))

    def _start(self, execution_input: dict[str, Any]) -> str:
        name = f"train-{uuid.uuid4().hex[:12]}"
        response = self.sfn.start_execution(
            stateMachineArn=self.stack.state_machine_alias_arn, name=name, input=json.dumps(execution_input)
        )
        return str(response["executionArn"])

    def _observe(self, event_type: str, details: dict[str, Any], execution_arn: str | None) -> None:
        started = details.get("executionStartedEventDetails")
        if started and execution_arn:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                parent = json.loads(started.get("input") or "{}").get("AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID")
                if parent:
                    self.parents[execution_arn] = str(parent)
        if execution_arn is not None:  # a chunk's states belong to the release's execution that started it
            execution_arn = self._root(execution_arn)
        entered = details.get("stateEnteredEventDetails")
        state = entered.get("name") if entered else None
        state_input: dict[str, Any] | None = None
        if entered and entered.get("input"):
            with contextlib.suppress(ValueError):
                state_input = json.loads(entered["input"])
        if self.on_event:
            self.on_event(Observed(event_type, state, state_input, self.clock.now(), details))
        if execution_arn in (self.people.main_arn, self.people.second_arn) or not self.people.main_arn:
            self.people.on_event(event_type, execution_arn, state, state_input)
        elif self.url_base is not None and execution_arn is not None:
            # Served: trains started over HTTP (`trainctl start`) get their clean-up too, as the rule's pattern matches
            # every execution of the machine; with no state, on_event only delivers that.
            self.people.on_event(event_type, execution_arn, None, None)

    # --- the report ---------------------------------------------------------------------------------------------

    def _result(self, described: dict[str, Any], wall_start: float) -> SimulationResult:
        people, ledger = self.people, self.ledger
        events = self._history(people.main_arn)
        executions = self._executions()
        # Step Functions bills every state transition of the release: its own execution's and its chunks'.
        transitions = sum(e["state_transitions"] for e in executions if self._root(e["arn"]) == people.main_arn)
        release_id = ledger.release_for_execution(people.main_arn)
        record = ledger.release(release_id) if release_id else None
        stages = []
        if record is not None and release_id is not None:
            manifest = {e.service: e for e in ledger.manifest(release_id)}
            builds = ledger.builds(release_id)
            for stage in self.fleet.stages:
                services = []
                for name, entry in sorted(manifest.items()):
                    build = next((b for b in builds if b.stage == stage.name and b.service == name), None)
                    services.append(
                        {
                            "name": name,
                            "commit": entry.commit,
                            "wave": entry.wave,
                            "build_status": build.status if build else "NOT_BUILT",
                            "build_id": build.build_id if build else None,
                            "error": (build.error or "")[:300] if build else None,
                        }
                    )
                stages.append({"name": stage.name, "services": services})
        second = None
        if people.second_arn:
            described_second = self.sfn.describe_execution(executionArn=people.second_arn)
            second = {
                "status": described_second["status"],
                "error": described_second.get("error"),
                "cause": _error_message(described_second.get("cause"))[:500],
            }
        deliveries = people.deliveries.get(people.main_arn, [])
        live = ledger.live(self.fleet.fleet)
        return SimulationResult(
            release_id=release_id,
            status=record.status.value if record else "NOT_STARTED",
            failed_state=record.failed_state if record else None,
            reason=record.reason if record else f"{described.get('error')}: {_error_message(described.get('cause'))}",
            execution_status=described["status"],
            execution_error=described.get("error"),
            stages=stages,
            history_events=len(events),
            state_transitions=transitions,
            virtual_duration_s=round(self.clock.elapsed, 3),
            wall_s=round(time.perf_counter() - wall_start, 3),
            estimated_cost_usd=round(transitions * TRANSITION_PRICE_USD, 6),
            builds_started=len(self.world.codebuild.builds),
            builds_throttled=self.world.codebuild.throttled_calls,
            lock_held_after=ledger.lock(self.fleet.fleet) is not None,
            second_start=second,
            gates=ledger.gates(release_id) if release_id else [],
            approvals=[
                a.__dict__
                for s in self.fleet.stages
                if release_id and (a := ledger.approval(release_id, s.name)) is not None
            ],
            approval_answers=people.answers,
            events=ledger.events(release_id) if release_id else [],
            cleanup=deliveries[0] if deliveries else None,
            cleanup_redeliveries=deliveries[1:],
            builds=self._builds(),
            fleet_releases=[
                {"release_id": r.release_id, "status": r.status.value, "execution_arn": r.execution_arn}
                for r in ledger.list_releases(self.fleet.fleet)
            ],
            deployments=[*self.world.codedeploy.report(), *self.world.ecs.report()],
            invocations=dict(_invocations()),
            invocations_by_version={k: dict(v) for k, v in _by_version().items()},
            executions=executions,
            live={stage: {s: r.commit for s, r in records.items()} for stage, records in live.items()},
            baseline_release=ledger.baseline(self.fleet.fleet)[0],
            live_detail={
                stage: {
                    s: {"commit": r.commit, "release_id": r.release_id, "how": r.how, "functions": r.functions}
                    for s, r in records.items()
                }
                for stage, records in live.items()
            },
        )

    def _executions(self) -> list[dict[str, Any]]:
        """Every execution in the sandbox, of every state machine (the train's and any child execution it started),
        oldest first, with what the two Step Functions hard limits are measured against (limits.py): the history's
        length (cap 25,000) and its largest state input/output/task result (cap 256 KiB)."""
        from moto.stepfunctions.responses import get_backend

        from trainctl.sandbox import limits

        found = sorted(get_backend(ACCOUNT, REGION)._get_executions(), key=lambda e: (e.start_date, e.execution_arn))
        report = []
        for e in found:
            events = self._history(e.execution_arn)
            report.append(
                {
                    "arn": e.execution_arn,
                    "state_machine": e.state_machine_arn,
                    "version": getattr(e, "sandbox_version_arn", None),
                    "status": self.sfn.describe_execution(executionArn=e.execution_arn)["status"],
                    "started_by": self.parents.get(e.execution_arn),  # the parent of a chunk execution
                    "history_events": len(events),
                    "state_transitions": sum(1 for v in events if v["type"].endswith("StateEntered")),
                    "largest_payload": limits.largest_payload(events),
                }
            )
        return report

    def _root(self, arn: str) -> str:
        while arn in self.parents:
            arn = self.parents[arn]
        return arn

    def _builds(self) -> list[dict[str, Any]]:
        start = self.clock.start
        out = []
        for build in sorted(self.world.codebuild.builds.values(), key=lambda b: (b.start_v, b.id)):
            out.append(
                {
                    "id": build.id,
                    "project": build.project,
                    "stage": build.stage,
                    "service": build.service,
                    "kind": build.kind,
                    "commit": build.source_version,
                    "release_id": build.env.get("RELEASE_ID"),
                    "status": build.status,
                    "started_at": _iso(start + timedelta(seconds=build.start_v)),
                    "ended_at": _iso(start + timedelta(seconds=build.end_v)) if build.end_v is not None else None,
                    "deployments": list(build.deployments),
                    **({"failure": build.failure} if build.failure else {}),
                }
            )
        return out

    def _history(self, arn: str) -> list[dict[str, Any]]:
        """Every event of the execution (read from the emulator's own record: the report only counts them)."""
        from moto.stepfunctions.responses import get_backend

        events = get_backend(ACCOUNT, REGION).get_execution_history(arn)["events"]
        return [{**e, "type": str(getattr(e["type"], "value", e["type"]))} for e in events]


def _by_version() -> dict[str, dict[str, int]]:
    from trainctl.sandbox.lambda_runtime import registry

    return registry.by_version


def _invocations() -> dict[str, int]:
    from trainctl.sandbox.lambda_runtime import registry

    return registry.invocations


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_message(cause: Any) -> str:
    """A Lambda error's cause is its JSON error payload: keep the message, drop the stack trace."""
    if not isinstance(cause, str):
        return str(cause or "")
    try:
        parsed = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(parsed, dict) and "errorMessage" in parsed:
        return str(parsed["errorMessage"])
    return cause
