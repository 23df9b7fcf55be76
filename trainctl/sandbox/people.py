"""The scripted people and the event deliveries around a simulated train.

People react to the states the execution enters, as the scenario scripts them: approvers answer an approval (maybe
late, twice, or two of them), operators cancel or start another train, the world fires a stage's alarms during the
bake. Each acts as a `PERSON` on the virtual clock: at its moment, after the machines due at that instant settled,
one at a time in the order scheduled (vtime). What an answer meets is what AWS would answer: an approval after its
timeout or after the execution stopped is refused with TaskTimedOut (moto_fixes 10), and the train records it.

EventBridge delivers the execution's status change to the clean-up function (the template's rule and target),
at least once and best effort: the scenario's `cleanup` says how late, how many copies, or lost.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trainctl.sandbox import vtime
from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.scenario import ApprovalAction, BreakGlassStart, OperatorAction
from trainctl.sandbox.vtime import MACHINE, PERSON

if TYPE_CHECKING:
    from release_train.adapters.ledger import Ledger
    from trainctl.sandbox.emulators import World
    from trainctl.sandbox.stack import Stack

EXECUTION_ENDED = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}
_NEEDS_CLEANUP = {"ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}


@dataclass
class People:
    world: World
    stack: Stack
    ledger: Ledger
    start_execution: Any  # (execution input) -> execution arn
    schedule_input: Any  # (schedule time or None) -> execution input
    main_arn: str = ""
    second_arn: str | None = None
    seen: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    answers: list[dict[str, Any]] = field(default_factory=list)
    deliveries: dict[str, list[dict[str, Any] | None]] = field(default_factory=dict)  # execution arn -> results
    train_versions: list[str] = field(default_factory=list)  # state machine versions deployed during the run

    # --- reacting to the history ------------------------------------------------------------------------------

    def on_event(self, event_type: str, execution_arn: str | None, state: str | None, state_input: Any) -> None:
        if event_type in _NEEDS_CLEANUP and execution_arn:
            self._schedule_cleanup(execution_arn)
        if state is None:
            return
        stage = _stage_of(state_input)
        self.seen[(state, stage)] += 1
        if stage is not None:
            self.seen[(state, None)] += 1
        for action in self.world.scenario.operator:
            if action.at_state != state or action.stage not in (None, stage):
                continue
            if self.seen[(state, action.stage)] == action.occurrence:
                self._schedule(
                    action.after.total_seconds(), lambda a=action: self._operate(a, state, stage), "operator"
                )
        if state == "Bake":
            self._alarms_during_bake(stage)
        if state == "RequestApproval" and stage is not None and isinstance(state_input, dict):
            release_id = str(state_input.get("release_id"))
            for n, answer in enumerate(self.world.scenario.approval_answers(stage)):
                if answer.decision != "none":
                    self._schedule(
                        answer.after.total_seconds(),
                        lambda a=answer: self._approve(a, release_id, stage),
                        f"approver-{n}",
                    )

    def _schedule(self, delay: float, act: Any, name: str, klass: int = PERSON) -> None:
        vtime.current().schedule(delay, act, f"{name}@{self.world.clock.elapsed:.0f}", klass)

    # --- people -----------------------------------------------------------------------------------------------

    def _operate(self, action: OperatorAction, state: str, stage: str | None) -> None:
        if action.action == "cancel":
            self.world.client("stepfunctions").stop_execution(
                executionArn=self.main_arn,
                error="OperatorCancelled",
                cause=f"scenario: operator cancelled at {state} ({stage})",
            )
        elif action.action == "second_start" and self.second_arn is None:
            self.second_arn = self.start_execution(self.schedule_input(action.schedule_time))
        elif action.action == "deploy_train":  # the platform team deploys a new version of release-train itself
            from trainctl.sandbox.stack import redeploy

            self.train_versions.append(redeploy(self.stack))
        elif action.action == "hold" and action.hold is not None:
            from release_train.domain.release import Hold

            assert self.world.fleet is not None
            hold = Hold(action.hold.scope, action.hold.reason, action.hold.by)
            self.ledger.put_hold(self.world.fleet.fleet, hold, self.world.clock.now())

    def _approve(self, answer: ApprovalAction, release_id: str, stage: str) -> None:
        """Through the AnswerApproval function URL, signed in as the scenario's principal, as `trainctl approve`."""
        from trainctl.sandbox import function_urls

        caller = answer.principal(ACCOUNT)
        record: dict[str, Any] = {
            "stage": stage,
            "by": answer.by,
            "identity": caller,
            "decision": answer.decision,
            "at": self.world.clock.now().isoformat(),
        }
        status, body = function_urls.invoke(
            self.stack.function_versions.get("AnswerApprovalFunction") or self.stack.physical("AnswerApprovalFunction"),
            caller,
            {
                "release_id": release_id,
                "stage": stage,
                "decision": answer.decision,
                "reason": answer.reason,
                "by": answer.by,
            },
            self.world.clock.now(),
            self.world.region,
        )
        record["http_status"] = status
        if status == 200:
            record["accepted"], record["status"] = True, body["status"]
        else:  # too late, already answered, not an approver: the train said why
            record["accepted"], record["refused"] = False, str(body.get("error") if isinstance(body, dict) else body)
        self.answers.append(record)

    def break_glass(self, start: BreakGlassStart) -> str:
        """Through the BreakGlass function URL, as `trainctl start --skip-bake`; the execution it started."""
        from trainctl.sandbox import function_urls

        body: dict[str, Any] = {
            "action": "start",
            "skip": start.skip,
            "reason": start.reason,
            "services": start.services,
        }
        status, answer = function_urls.invoke(
            self.stack.function_versions["BreakGlassFunction"],
            start.principal(ACCOUNT),
            body,
            self.world.clock.now(),
            self.world.region,
        )
        if status != 200:
            raise ValueError(f"break_glass: the BreakGlass function refused the start ({status}): {answer}")
        return str(answer["execution_arn"])

    def _alarms_during_bake(self, stage: str | None) -> None:
        for alarm in self.world.scenario.alarms:
            if alarm.stage != stage or alarm.during != "bake":
                continue

            def fire(
                name: str = alarm.name, recovers: bool = alarm.recovers, account: str = self.world.stage_account(stage)
            ) -> None:
                self.world.alarms.set_state(name, "ALARM", "scenario: bake", account)
                if recovers:
                    vtime.current().sleep(1800)
                    self.world.alarms.set_state(name, "OK", "scenario: recovered", account)

            self._schedule(0, fire, f"alarm-{alarm.name}", MACHINE)

    # --- EventBridge: the execution's status change, to the clean-up ------------------------------------------------

    def _schedule_cleanup(self, execution_arn: str) -> None:
        delivery = self.world.scenario.cleanup
        if delivery.lost or execution_arn in self.deliveries:
            self.deliveries.setdefault(execution_arn, [])
            return
        self.deliveries[execution_arn] = []

        def deliver() -> None:
            for _ in range(delivery.copies):
                self.deliveries[execution_arn].append(self.deliver_status_change(execution_arn))

        self._schedule(delivery.after.total_seconds(), deliver, "eventbridge", MACHINE)

    def deliver_status_change(self, execution_arn: str) -> dict[str, Any] | None:
        """'Step Functions Execution Status Change', matched against the template's rule pattern."""
        from moto.events.models import EventPattern

        from trainctl.sandbox.lambda_runtime import registry

        described = self.world.client("stepfunctions").describe_execution(executionArn=execution_arn)
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states",
            "account": ACCOUNT,
            "time": self.world.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.world.region,
            "resources": [execution_arn],
            "detail": {
                "executionArn": execution_arn,
                "stateMachineArn": self.stack.state_machine_arn,
                "name": described.get("name"),
                "status": described["status"],
                "error": described.get("error"),
                "cause": described.get("cause"),
                "startDate": _epoch_ms(described.get("startDate")),
                "stopDate": _epoch_ms(described.get("stopDate")),
                "input": described.get("input"),
                "output": described.get("output"),
            },
        }
        pattern = json.loads(
            json.dumps(self.stack.cleanup_rule["pattern"]).replace(
                '{"Ref": "ReleaseTrainStateMachine"}', json.dumps(self.stack.state_machine_arn)
            )
        )
        if not EventPattern.load(json.dumps(pattern)).matches_event(event):
            return None
        payload, errored = registry.invoke(self.stack.cleanup_rule["function"], event)
        result: dict[str, Any] = json.loads(payload)
        if errored:
            result = {"errored": True, **result}
        return result


def _epoch_ms(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else None


def _stage_of(state_input: Any) -> str | None:
    if not isinstance(state_input, dict):
        return None
    stage = state_input.get("stage")
    if isinstance(stage, dict):
        return str(stage.get("name"))
    return str(stage) if stage else None
