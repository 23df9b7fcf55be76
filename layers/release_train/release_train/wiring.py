"""Composition root: builds services from the function's environment. Handlers call this once, at import."""

from __future__ import annotations

import os
from functools import cache

import boto3

from release_train.adapters.aws import CONFIG, client
from release_train.adapters.clock import Clock
from release_train.adapters.codebuild import CodeBuild
from release_train.adapters.executions import Executions
from release_train.adapters.fleet_store import FleetStore
from release_train.adapters.functions import Functions
from release_train.adapters.ledger import Ledger
from release_train.adapters.mac import KmsMac
from release_train.adapters.metrics import TrainMetrics
from release_train.adapters.notifier import Notifier
from release_train.adapters.sources import Sources
from release_train.adapters.stage_clients import StageClients
from release_train.domain.guardrails import Guardrails
from release_train.services import (
    AnswerApprovalService,
    ApprovalService,
    BreakGlassService,
    CleanupService,
    FinalizeService,
    GateService,
    LoadWaveService,
    PlanService,
    RecordFailureService,
    RecordWaveService,
)
from release_train.services.stage_ports import PerAccount


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
        guardrails=Guardrails.from_environment(os.environ),
        break_glass=_break_glass_mac(),
        metrics=TrainMetrics(),
    )


def _break_glass_mac() -> KmsMac | None:
    """The stack sets BREAK_GLASS_KEY only when AllowBreakGlass is true (the key exists only then)."""
    key = os.environ.get("BREAK_GLASS_KEY", "")
    return KmsMac(client("kms"), key) if key else None


def break_glass_service() -> BreakGlassService:
    mac = _break_glass_mac()
    if mac is None:
        raise RuntimeError("BREAK_GLASS_KEY is not set: the stack creates BreakGlass only with AllowBreakGlass=true")
    return BreakGlassService(
        ledger(),
        FleetStore(client("s3"), _env("CONFIG_BUCKET")),
        mac,
        Executions(client("stepfunctions")),
        notifier(),
        Clock(),
        _env("STATE_MACHINE_ALIAS_ARN"),
    )


def functions() -> Functions:
    return Functions(client("lambda"))


@cache
def stage_clients() -> StageClients:
    return StageClients.from_environment(os.environ, client, CONFIG)


def stage_functions() -> PerAccount[Functions]:
    """Aliases of a stage, in the stage's account (docs/accounts.md)."""
    return PerAccount(stage_clients().functions)


def load_wave_service() -> LoadWaveService:
    return LoadWaveService(ledger(), stage_functions(), Clock())


def record_wave_service() -> RecordWaveService:
    return RecordWaveService(ledger(), stage_functions(), Clock(), TrainMetrics())


def gate_service() -> GateService:
    return GateService(
        ledger(),
        CodeBuild(client("codebuild")),
        PerAccount(stage_clients().alarms),
        notifier(),
        Clock(),
        TrainMetrics(),
    )


def answer_approval_service() -> AnswerApprovalService:
    return AnswerApprovalService(ledger(), Executions(client("stepfunctions")), Clock(), TrainMetrics())


def approval_service() -> ApprovalService:
    return ApprovalService(ledger(), Executions(client("stepfunctions")), notifier(), Clock())


def finalize_service() -> FinalizeService:
    return FinalizeService(ledger(), notifier(), Clock(), TrainMetrics())


def record_failure_service() -> RecordFailureService:
    return RecordFailureService(
        ledger(), Executions(client("stepfunctions")), stage_functions(), notifier(), Clock(), TrainMetrics()
    )


def cleanup_service() -> CleanupService:
    return CleanupService(
        ledger(),
        Executions(client("stepfunctions")),
        CodeBuild(client("codebuild")),
        PerAccount(stage_clients().deployments),
        stage_functions(),
        notifier(),
        Clock(),
        TrainMetrics(),
    )
