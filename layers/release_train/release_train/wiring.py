"""Composition root: builds services from the function's environment. Handlers call this once, at import."""

from __future__ import annotations

import os

import boto3

from release_train.adapters.alarms import Alarms
from release_train.adapters.aws import client
from release_train.adapters.clock import Clock
from release_train.adapters.codebuild import CodeBuild
from release_train.adapters.executions import Executions
from release_train.adapters.fleet_store import FleetStore
from release_train.adapters.ledger import Ledger
from release_train.adapters.notifier import Notifier
from release_train.adapters.sources import Sources
from release_train.services import ApprovalService, CloseService, GateService, PlanService, WaveService


def _env(name: str) -> str:
    try:
        return os.environ[name]
    except KeyError:
        raise RuntimeError(f"environment variable {name} is not set (template.yaml Globals/Environment)") from None


def ledger() -> Ledger:
    return Ledger(boto3.resource("dynamodb").Table(_env("LEDGER_TABLE")))


def notifier() -> Notifier:
    return Notifier(client("sns"), _env("TOPIC_ARN"), client("secretsmanager"))


def plan_service() -> PlanService:
    return PlanService(
        ledger=ledger(),
        fleets=FleetStore(client("s3"), _env("CONFIG_BUCKET")),
        sources=Sources(
            client("codecommit"), client("secretsmanager"), os.environ.get("GITHUB_API_URL") or "https://api.github.com"
        ),
        executions=Executions(client("stepfunctions")),
        notifier=notifier(),
        clock=Clock(),
    )


def wave_service() -> WaveService:
    return WaveService(ledger(), Clock())


def gate_service() -> GateService:
    return GateService(ledger(), CodeBuild(client("codebuild")), Alarms(client("cloudwatch")), notifier(), Clock())


def approval_service() -> ApprovalService:
    return ApprovalService(ledger(), Executions(client("stepfunctions")), notifier(), Clock(), evidence=gate_service())


def close_service() -> CloseService:
    return CloseService(
        ledger(), Executions(client("stepfunctions")), CodeBuild(client("codebuild")), notifier(), Clock()
    )
