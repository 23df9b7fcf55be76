"""A small sandbox for the moto-fix regression tests: moto + the fixes + the emulated world on a virtual clock.

Tests act from the main thread (not a participant): `start()` and `answer()` hold the clock while they act, and
`settle()` waits until nothing runs and nothing is due. Nothing here waits on the wall clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from release_train.domain.fleet import Fleet
from trainctl.sandbox import emulators, moto_fixes, vtime
from trainctl.sandbox.lambda_runtime import FunctionSpec, registry
from trainctl.sandbox.observer import observers
from trainctl.sandbox.runner import _sandbox_env
from trainctl.sandbox.scenario import Scenario

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/sfn"
START = datetime(2026, 11, 23, 9, tzinfo=UTC)


@dataclass
class Sandbox:
    sfn: Any
    clock: vtime.Scheduler
    world: emulators.World
    tmp: Path

    def machine(self, definition: dict[str, Any]) -> str:
        return str(
            self.sfn.create_state_machine(
                name=f"m{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=ROLE
            )["stateMachineArn"]
        )

    def start(self, definition: dict[str, Any], payload: dict[str, Any] | None = None) -> str:
        with self.clock.holding():
            machine = self.machine(definition)
            return str(
                self.sfn.start_execution(stateMachineArn=machine, name="e1", input=json.dumps(payload or {}))[
                    "executionArn"
                ]
            )

    def settle(self) -> None:
        self.clock.wait_idle(real_timeout=120)

    def run(self, definition: dict[str, Any], payload: dict[str, Any] | None = None) -> dict[str, Any]:
        arn = self.start(definition, payload)
        self.settle()
        return dict(self.sfn.describe_execution(executionArn=arn))

    def act(self, action: Callable[[], Any]) -> Any:
        with self.clock.holding():
            return action()

    def function(self, name: str, body: str, env: dict[str, str] | None = None) -> str:
        code = self.tmp / name
        code.mkdir()
        (code / "app.py").write_text(body)
        trust = {
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:*"}]
        }
        role = boto3.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
        arn = boto3.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": b"x"},
            Environment={"Variables": env or {}},
        )["FunctionArn"]
        registry.register(FunctionSpec(name, name.title(), code, "app.handler", env or {}, 30, 128, arn))
        return str(arn)


@contextmanager
def on_state(name: str, act: Callable[[], Any], occurrence: int = 1) -> Iterator[None]:
    """Act as a person once the world settled after `name` was entered for the n-th time."""
    seen = {"n": 0}

    def observe(event_type: str, details: dict[str, Any], arn: str | None) -> None:
        entered = details.get("stateEnteredEventDetails")
        if entered and entered.get("name") == name:
            seen["n"] += 1
            if seen["n"] == occurrence:
                vtime.current().schedule(0, act, f"person-at-{name}")

    observers.append(observe)
    try:
        yield
    finally:
        observers.remove(observe)


@contextmanager
def sandbox(tmp: Path, scenario: Scenario | None = None, fleet: Fleet | None = None) -> Iterator[Sandbox]:
    moto_fixes.apply()
    registry.reset()
    clock = vtime.Scheduler(START)
    with (
        _sandbox_env(),
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}),
        moto_fixes.virtual_time(clock),
    ):
        world = emulators.World(scenario or Scenario(), fleet, clock, REGION)
        emulators.activate(world)
        try:
            yield Sandbox(boto3.client("stepfunctions"), clock, world, tmp)
            clock.wait_idle(real_timeout=120)
        finally:
            emulators.activate(None)
            registry.reset()
