"""Run one whole release train on the embedded emulator and report what happened.

The train starts as the schedule starts it (the schedule's target input from template.yaml, at the scenario's virtual
schedule time). People (approvers, operators) act as the scenario scripts, reacting to the states the execution
enters. When the execution ends ABORTED/FAILED/TIMED_OUT, the EventBridge rule from the template is matched and its
target (the clean-up function) is invoked, as EventBridge would.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from release_train.domain.fleet import CodeCommitSource, Fleet, GitHubSource, parse_fleet
from trainctl.sandbox import moto_fixes
from trainctl.sandbox.scenario import OperatorAction, Scenario

REGION = "us-east-1"
# ~0.35 s of wall time for a 2-day bake; override with --time-scale.
DEFAULT_TIME_SCALE = 2e-6
TRANSITION_PRICE_USD = 0.025 / 1000
ACCOUNT = "123456789012"  # moto's default account
_EXECUTION_ENDED = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}


@dataclass
class Observed:
    type: str
    state: str | None
    input: dict[str, Any] | None
    virtual_time: datetime


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
    events: list[dict[str, Any]] = field(default_factory=list)
    cleanup: dict[str, Any] | None = None
    failed_state: str | None = None  # the state the ledger names for a FAILED or BLOCKED release
    cleanup_redeliveries: list[dict[str, Any] | None] = field(default_factory=list)  # EventBridge delivering again
    builds: list[dict[str, Any]] = field(default_factory=list)  # every emulated CodeBuild build, as it ended
    fleet_releases: list[dict[str, Any]] = field(default_factory=list)  # every release of the fleet in the ledger
    deployments: list[dict[str, Any]] = field(default_factory=list)
    invocations: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextlib.contextmanager
def _sandbox_env() -> Iterator[None]:
    """Fake credentials and region: the sandbox must never reach a real account, whatever the shell has."""
    saved = dict(os.environ)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "AWS_SESSION_TOKEN": "sandbox",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _GitHub(BaseHTTPRequestHandler):
    """A loopback stand-in for the GitHub REST API's `GET /repos/{owner}/{repo}/branches/{branch}`."""

    heads: dict[tuple[str, str], str] = {}

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) == 5 and parts[0] == "repos" and parts[3] == "branches":
            sha = self.heads.get((f"{parts[1]}/{parts[2]}", parts[4]))
            if sha:
                self._send(200, {"name": parts[4], "commit": {"sha": sha}})
                return
        self._send(404, {"message": "Not Found"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


def simulate(
    fleet_path: Path,
    scenario: Scenario,
    root: Path,
    on_event: Callable[[Observed], None] | None = None,
    time_scale: float = DEFAULT_TIME_SCALE,
    log_path: Path | None = None,
) -> SimulationResult:
    fleet = parse_fleet(fleet_path.read_text(), str(fleet_path))  # reject a bad fleet before anything exists
    moto_fixes.apply()
    from moto import mock_aws

    wall_start = time.perf_counter()
    github = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    threading.Thread(target=github.serve_forever, daemon=True).start()
    log_file = (log_path or Path(os.devnull)).open("w")
    try:
        with (
            _sandbox_env(),
            mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
        ):
            return _Run(fleet, scenario, root, on_event, time_scale, github, log_file).run(wall_start)
    finally:
        github.shutdown()
        log_file.close()
        _deactivate()


def _deactivate() -> None:
    """The run's world ends with it: later code in this process (tests, a second run) sees real time and moto."""
    from release_train.adapters.clock import Clock, system_now
    from trainctl.sandbox import clock as vclock
    from trainctl.sandbox import emulators

    vclock.activate(None)
    emulators.activate(None)
    Clock.source = staticmethod(system_now)


class _Run:
    def __init__(
        self,
        fleet: Fleet,
        scenario: Scenario,
        root: Path,
        on_event: Callable[[Observed], None] | None,
        time_scale: float,
        github: ThreadingHTTPServer,
        log_file: Any,
    ) -> None:
        import boto3

        from release_train.adapters.clock import Clock
        from trainctl.sandbox import clock as vclock
        from trainctl.sandbox import emulators
        from trainctl.sandbox.lambda_runtime import registry

        self.fleet, self.scenario, self.root, self.on_event = fleet, scenario, root, on_event
        self.clock = vclock.VirtualClock(scenario.schedule_time, time_scale)
        vclock.activate(self.clock)
        Clock.source = staticmethod(self.clock.now)
        self.world = emulators.World(scenario, self.clock, REGION)
        emulators.activate(self.world)
        registry.reset()
        registry.log.target = log_file
        self.registry = registry
        self.github = github
        self.sfn = boto3.client("stepfunctions")
        self.seen: Counter[tuple[str, str | None]] = Counter()
        self.second: dict[str, Any] | None = None
        self.second_arn: str | None = None
        self.execution_arn = ""
        self.threads: list[threading.Thread] = []
        self.redeliveries: list[dict[str, Any] | None] = []
        self._pending: list[
            tuple[OperatorAction, str, str | None]
        ] = []  # operator actions waiting for their task to start
        self._pending_waits_for_job = False
        self._pending_lock = threading.Lock()
        self.deployments: list[dict[str, Any]] = []
        self._ended = threading.Event()  # an execution wrote its last history event (see _wait)

    # --- set-up: the account the train runs in ----------------------------------------------------------------------

    def _setup(self) -> None:
        import boto3

        from release_train.adapters.clock import Clock
        from release_train.adapters.fleet_store import FleetStore
        from release_train.adapters.ledger import Ledger
        from release_train.domain.release import Hold
        from trainctl.sandbox.stack import create_stack

        port = self.github.server_address[1]
        self.stack = create_stack(self.root, parameters={"GitHubApiUrl": f"http://127.0.0.1:{port}"})
        from trainctl.sandbox.codedeploy import CodeDeployEmulator

        canary = CodeDeployEmulator(
            self.scenario,
            self.clock,
            self.root,
            self.stack.physical("PreTrafficFunction"),
            self.stack.physical("PostTrafficFunction"),
        )
        self.deployments = canary.deployments  # prod canary deployments, reported in SimulationResult.deployments
        self.world.on_build_start.append(canary.on_build_start)
        fleet, scenario = self.fleet, self.scenario
        changed = {s.name for s in fleet.services} if scenario.changed == "all" else set(scenario.changed)
        baseline = {}
        heads: dict[tuple[str, str], str] = {}
        secrets: set[str] = set()
        for service in fleet.services:
            head = scenario.commit(service.name, "head")
            baseline[service.name] = scenario.commit(service.name, "previous") if service.name in changed else head
            source = service.source
            if isinstance(source, CodeCommitSource):
                self.world.branches[(source.codecommit, source.branch)] = head
            elif isinstance(source, GitHubSource):
                heads[(source.github, source.branch)] = head
                if source.token_secret and source.token_secret not in secrets:
                    secrets.add(source.token_secret)
                    boto3.client("secretsmanager").create_secret(
                        Name=source.token_secret, SecretString="ghp_sandbox_token"
                    )
            for stage in fleet.stages:
                self.world.register_project(fleet.project_for(service, stage.name), stage.name, service.name)
        _GitHub.heads = heads
        for stage in fleet.stages:
            if stage.test_project:
                self.world.register_project(stage.test_project, stage.name, None)

        ledger = Ledger(boto3.resource("dynamodb").Table(self.stack.physical("LedgerTable")))
        self.ledger = ledger
        ledger.set_baseline(fleet.fleet, "2026-W47", baseline)
        for hold in scenario.holds:
            ledger.put_hold(fleet.fleet, Hold(hold.scope, hold.reason, hold.by), Clock().now())

        fleet_doc = fleet.model_dump(mode="json", exclude_defaults=False)
        if scenario.freeze_now:
            fleet_doc["freeze_windows"] = [
                *fleet_doc["freeze_windows"],
                {
                    "start": (scenario.schedule_time.replace(hour=0, minute=0)).isoformat(),
                    "end": (scenario.schedule_time.replace(hour=23, minute=59)).isoformat(),
                    "reason": "scenario freeze",
                },
            ]
        FleetStore(boto3.client("s3"), self.stack.physical("ConfigBucket")).push(yaml.safe_dump(fleet_doc))

        cloudwatch = boto3.client("cloudwatch")

        def healthy_alarm(name: str) -> None:
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                Namespace="AWS/Lambda",
                MetricName="Errors",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
            )
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="sandbox start")

        for alarm in scenario.alarms:
            healthy_alarm(alarm.name)
        for stage in fleet.stages:
            if (
                stage.alarms
                and stage.alarms.prefix
                and not any(a.name.startswith(stage.alarms.prefix) for a in scenario.alarms)
            ):
                # A healthy stage still has alarms to read: give it one, in OK.
                healthy_alarm(f"{stage.alarms.prefix}errors")

    # --- the run ------------------------------------------------------------------------------------------------

    def run(self, wall_start: float) -> SimulationResult:
        self._setup()
        from trainctl.sandbox.observer import observers

        observers.append(self._observe)
        try:
            execution_input = self.scenario.execution_input or self._schedule_input()
            self.execution_arn = self._start(execution_input)
            status = self._wait(self.execution_arn)
            if self.second_arn:
                self._wait(self.second_arn)
            for thread in self.threads:
                thread.join(timeout=30)
        finally:
            observers.remove(self._observe)
        cleanup = self._deliver_status_change(self.execution_arn, status)
        # EventBridge delivers at least once: the clean-up must be idempotent.
        self.redeliveries = [
            self._deliver_status_change(self.execution_arn, status)
            for _ in range(self.scenario.status_change_deliveries - 1)
        ]
        if self.second_arn:
            second = self.sfn.describe_execution(executionArn=self.second_arn)
            self._deliver_status_change(self.second_arn, dict(second))
            self.second = {
                "status": second["status"],
                "error": second.get("error"),
                "cause": _error_message(second.get("cause"))[:500],
            }
        return self._result(status, cleanup, wall_start)

    def _schedule_input(self, at: datetime | None = None) -> dict[str, Any]:
        text = json.dumps(self.stack.schedule_input)
        when = (at or self.scenario.schedule_time).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return dict(json.loads(text.replace("<aws.scheduler.scheduled-time>", when)))

    def _start(self, execution_input: dict[str, Any]) -> str:
        name = f"train-{uuid.uuid4().hex[:12]}"
        response = self.sfn.start_execution(
            stateMachineArn=self.stack.state_machine_arn, name=name, input=json.dumps(execution_input)
        )
        return str(response["executionArn"])

    def _wait(self, arn: str) -> dict[str, Any]:
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return dict(described)
            # An execution's last history event comes just before its status changes. The event says only that
            # *some* execution ended (a refused second start ends first), so it is a wake-up, not a state: look
            # closely for a moment, then go back to asking now and then (polling hard starves the interpreter).
            if self._ended.wait(0.25):
                self._ended.clear()
                for _ in range(50):
                    described = self.sfn.describe_execution(executionArn=arn)
                    if described["status"] != "RUNNING":
                        return dict(described)
                    time.sleep(0.01)

    def _deliver_status_change(self, arn: str, described: dict[str, Any]) -> dict[str, Any] | None:
        """EventBridge: 'Step Functions Execution Status Change', matched against the template's rule pattern."""
        from moto.events.models import EventPattern

        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": self.clock.now().isoformat(),
            "region": REGION,
            "resources": [arn],
            "detail": {
                "executionArn": arn,
                "stateMachineArn": self.stack.state_machine_arn,
                "name": described.get("name"),
                "status": described["status"],
                "error": described.get("error"),
                "cause": described.get("cause"),
                "startDate": None,
                "stopDate": None,
                "input": None,
                "output": None,
            },
        }
        pattern = json.loads(
            json.dumps(self.stack.cleanup_rule["pattern"]).replace(
                '{"Ref": "ReleaseTrainStateMachine"}', json.dumps(self.stack.state_machine_arn)
            )
        )
        if not EventPattern.load(json.dumps(pattern)).matches_event(event):
            return None
        payload, errored = self.registry.invoke(self.stack.cleanup_rule["function"], event)
        result: dict[str, Any] = json.loads(payload)
        if errored:
            raise RuntimeError(f"clean-up function failed: {result}")
        return result

    # --- people and the world reacting to the execution ---------------------------------------------------------

    def _observe(self, event_type: str, details: dict[str, Any]) -> None:
        if event_type in _EXECUTION_ENDED:
            self._ended.set()
        entered = details.get("stateEnteredEventDetails")
        state = entered.get("name") if entered else None
        state_input: dict[str, Any] | None = None
        if entered and entered.get("input"):
            with contextlib.suppress(ValueError):
                state_input = json.loads(entered["input"])
        if self.on_event:
            self.on_event(Observed(event_type, state, state_input, self.clock.now()))
        if not entered:
            self._task_progress(event_type, details)
            return
        stage = _stage_of(state_input)
        self.seen[(str(state), stage)] += 1
        self.seen[(str(state), None)] += 1 if stage else 0
        due: list[tuple[OperatorAction, str, str | None]] = []
        for action in self.scenario.operator:
            if action.at_state == state and action.stage in (None, stage):
                count = self.seen[(state, action.stage)] if action.stage else self.seen[(state, None)]
                if count == action.occurrence:
                    due.append((action, str(state), stage))
        if event_type == "TaskStateEntered" and due:
            # People act while a task's work is under way (a build running), not before it starts: see _task_progress.
            with self._pending_lock:
                self._pending, self._pending_waits_for_job = due, False
        else:
            for action, at, in_stage in due:
                self._operator(action, at, in_stage)
        if state == "Bake":
            self._alarms_during_bake(stage)
        if state == "RequestApproval":
            self._approver(stage, state_input)

    def _task_progress(self, event_type: str, details: dict[str, Any]) -> None:
        """Fire the actions due in a Task state once its work is under way.

        A `.sync` or callback task is under way once submitted (TaskSubmitted: the build was started); any other task
        once started. moto runs each task on a worker thread and task events carry no state name, so this follows the
        next task events after the state was entered (in a Map, the sibling iterations run the same state).
        """
        with self._pending_lock:
            due = self._pending
            if not due:
                return
            if event_type == "TaskScheduled":
                resource = str((details.get("taskScheduledEventDetails") or {}).get("resource", ""))
                self._pending_waits_for_job = resource.endswith((".sync", ".sync:2", ".waitForTaskToken"))
                return
            if event_type != "TaskSubmitted" and (event_type != "TaskStarted" or self._pending_waits_for_job):
                return
            self._pending = []
        for action, at, in_stage in due:
            self._operator(action, at, in_stage)

    def _operator(self, action: OperatorAction, state: str, stage: str | None) -> None:
        with self.clock.hold():  # people act in no virtual time: nothing comes due while they do
            self._act(action, state, stage)

    def _act(self, action: OperatorAction, state: str, stage: str | None) -> None:
        if action.action == "cancel":
            self.sfn.stop_execution(
                executionArn=self.execution_arn,
                error="OperatorCancelled",
                cause=f"scenario: operator cancelled at {state} ({stage})",
            )
        elif action.action == "second_start" and self.second_arn is None:
            self.second_arn = self._start(self._schedule_input(action.schedule_time))
            self._until_planned(self.second_arn)

    def _until_planned(self, arn: str) -> None:
        """Hold this execution until the other one has planned: planning takes no virtual time, so the world must not
        move on (a scaled approval timeout would otherwise race the newer train's supersede)."""
        done = {"TaskStateExited", "ExecutionFailed", "ExecutionSucceeded", "ExecutionAborted"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events = self.sfn.get_execution_history(executionArn=arn, maxResults=100)["events"]
            if any(e["type"] in done for e in events):
                return
            time.sleep(0.005)

    def _alarms_during_bake(self, stage: str | None) -> None:
        import boto3

        cloudwatch = boto3.client("cloudwatch")
        for alarm in self.scenario.alarms:
            if alarm.stage != stage or alarm.during != "bake":
                continue
            cloudwatch.set_alarm_state(AlarmName=alarm.name, StateValue="ALARM", StateReason="scenario: bake")
            self.world.record_alarm(alarm.name, "OK", "ALARM")
            if alarm.recovers:

                def recover(name: str = alarm.name) -> None:
                    self.clock.sleep(1800)
                    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="scenario: recovered")
                    self.world.record_alarm(name, "ALARM", "OK")

                self._background(recover)

    def _approver(self, stage: str | None, state_input: dict[str, Any] | None) -> None:
        action = self.scenario.approvals.get(stage or "")
        if action is None or action.decision == "none" or state_input is None:
            return
        release_id = state_input["release_id"]

        def decide() -> None:
            from trainctl import ops

            # The approver reads the packet first: wait until RequestApproval stored the token.
            for _ in range(2000):
                if self.ledger.approval(release_id, str(stage)) is not None:
                    break
                time.sleep(0.005)
            self.clock.sleep(action.after.total_seconds())
            with self.clock.hold():
                ops.decide_approval(
                    self.ledger, release_id, str(stage), action.decision == "approve", action.by, action.reason
                )

        self._background(decide)

    def _background(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        self.threads.append(thread)
        thread.start()

    # --- the report ---------------------------------------------------------------------------------------------

    def _result(self, described: dict[str, Any], cleanup: dict[str, Any] | None, wall_start: float) -> SimulationResult:
        events = self._history(self.execution_arn)
        transitions = sum(1 for e in events if e["type"].endswith("StateEntered"))
        release_id = self.ledger.release_for_execution(self.execution_arn)
        record = self.ledger.release(release_id) if release_id else None
        stages = []
        if record is not None and release_id is not None:
            manifest = {e.service: e for e in self.ledger.manifest(release_id)}
            builds = self.ledger.builds(release_id)
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
        lock = self.ledger.lock(self.fleet.fleet)
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
            builds_started=len(self.world.builds),
            builds_throttled=self.world.throttled_calls,
            lock_held_after=lock is not None,
            second_start=self.second,
            gates=self.ledger.gates(release_id) if release_id else [],
            approvals=[
                a.__dict__
                for s in self.fleet.stages
                if release_id and (a := self.ledger.approval(release_id, s.name)) is not None
            ],
            events=self.ledger.events(release_id) if release_id else [],
            cleanup=cleanup,
            cleanup_redeliveries=self.redeliveries,
            builds=self._builds(),
            fleet_releases=[
                {"release_id": r.release_id, "status": r.status.value, "execution_arn": r.execution_arn}
                for r in self.ledger.list_releases(self.fleet.fleet)
            ],
            deployments=self.deployments,
            invocations=dict(self.registry.invocations),
        )

    def _builds(self) -> list[dict[str, Any]]:
        now_v = self.clock.elapsed
        out = []
        for build in sorted(self.world.builds.values(), key=lambda b: (b.start_v, b.id)):
            stage = build.env.get("STAGE", self.world.projects.get(build.project, ""))
            test = build.project in self.world.test_projects
            out.append(
                {
                    "id": build.id,
                    "project": build.project,
                    "stage": stage,
                    "service": None if test else self.world.service_for(build.project, stage),
                    "kind": "test" if test else "service",
                    "commit": build.source_version,
                    "release_id": build.env.get("RELEASE_ID"),
                    "status": build.status(now_v),
                }
            )
        return out

    def _history(self, arn: str) -> list[dict[str, Any]]:
        """Every event of the execution, as GetExecutionHistory pages them (read from the emulator's own record: the
        report only counts them, and serialising thousands of events through the API took about a second at N=100)."""
        from moto.stepfunctions.responses import get_backend

        events = get_backend(ACCOUNT, REGION).get_execution_history(arn)["events"]
        return [{**e, "type": str(getattr(e["type"], "value", e["type"]))} for e in events]


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


def _stage_of(state_input: dict[str, Any] | None) -> str | None:
    if not state_input:
        return None
    stage = state_input.get("stage")
    if isinstance(stage, dict):
        return str(stage.get("name"))
    return str(stage) if stage else None
