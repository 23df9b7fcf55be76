"""Operator actions shared by the CLI and the sandbox's scripted people (one code path for both)."""

from __future__ import annotations

from release_train.adapters.aws import client
from release_train.adapters.clock import Clock
from release_train.adapters.executions import Executions
from release_train.adapters.ledger import ApprovalRecord, Ledger
from release_train.adapters.notifier import Notifier
from release_train.services import ApprovalService


class _Silent(Notifier):
    def __init__(self) -> None:
        pass

    def send(self, subject: str, body: dict[str, object], webhook_secret: str | None = None) -> bool:
        return True


def decide_approval(ledger: Ledger, release_id: str, stage: str, approve: bool, by: str, reason: str) -> ApprovalRecord:
    service = ApprovalService(ledger, Executions(client("stepfunctions")), _Silent(), Clock())
    return service.decide(release_id, stage, approve, by, reason)
