"""AnswerApproval: a person answers a stage's approval. The only way an answer reaches Step Functions.

The caller's identity is the IAM principal AWS authenticated (the function URL's AWS_IAM auth), never a name the
caller typed: it is checked against the stage's approvers in the release's pinned fleet, recorded, and only then is the
answer sent (SendTaskSuccess / SendTaskFailure, which only this function's role may call). A refused answer is kept
too: who tried to answer what, and why it did not count.
"""

from __future__ import annotations

from release_train.adapters.ledger import ApprovalRecord, Ledger
from release_train.adapters.metrics import MetricsPort, NoMetrics
from release_train.domain.errors import InvalidInput, NoSuchApproval, NotAnApprover
from release_train.domain.fleet import Fleet, matching_approver
from release_train.domain.release import ApprovalNotWaiting, ApprovalRejected
from release_train.services.ports import ClockPort, ExecutionsPort


class AnswerApprovalService:
    def __init__(
        self, ledger: Ledger, executions: ExecutionsPort, clock: ClockPort, metrics: MetricsPort | None = None
    ) -> None:
        self._ledger, self._executions, self._clock = ledger, executions, clock
        self._metrics = metrics or NoMetrics()

    def answer(
        self, caller: str, release_id: str, stage: str, approve: bool, reason: str, by: str = ""
    ) -> ApprovalRecord:
        """`caller`: the authenticated principal ARN; `by`: an optional display name, recorded beside it."""
        status = "APPROVED" if approve else "REJECTED"
        name = by or caller
        record = self._ledger.approval(release_id, stage)
        if record is None:
            raise NoSuchApproval(f"release {release_id} has no approval request for stage {stage}")
        fleet = Fleet.model_validate(self._ledger.pinned_fleet(release_id))
        stages = {s.name: s for s in fleet.stages}
        if stage not in stages:
            raise NoSuchApproval(f"release {release_id} has no stage {stage}; it has {list(stages)}")
        approvers = fleet.approvers_for(stages[stage])
        if matching_approver(approvers, caller) is None:
            why = f"{caller} is not an approver of stage {stage} (approvers: {', '.join(approvers)})"
            self._refused(release_id, stage, status, name, caller, why)
            raise NotAnApprover(why)
        if not self._ledger.decide_approval(release_id, stage, status, name, reason, identity=caller):
            current = self._ledger.approval(release_id, stage)
            why = f"already decided: {current.status if current else '?'}"
            self._refused(release_id, stage, status, name, caller, why)
            raise InvalidInput("approval", [why])
        # Claimed in the ledger first (two approvers cannot both answer); undone if the answer cannot be delivered.
        try:
            if approve:
                self._executions.approve(record.task_token, {"approved_by": name, "identity": caller, "reason": reason})
            else:
                self._executions.reject(record.task_token, ApprovalRejected.__name__, f"rejected by {name}: {reason}")
        except ApprovalNotWaiting as exc:
            self._ledger.decide_approval(release_id, stage, "EXPIRED", name, str(exc), expected=status, identity=caller)
            self._refused(release_id, stage, status, name, caller, f"Step Functions no longer waits: {exc}")
            raise InvalidInput(
                "approval", [f"release {release_id} stage {stage} no longer waits for an answer ({exc})"]
            ) from exc
        except Exception:
            self._ledger.decide_approval(release_id, stage, "PENDING", "", "", expected=status)
            raise
        answered = self._clock.now()
        self._ledger.add_event(
            release_id,
            "approval_decided",
            {"stage": stage, "status": status, "by": name, "identity": caller},
            answered,
        )
        self._metrics.approval_wait(fleet.fleet, record.requested_at, answered)  # delivered answers only
        decided = self._ledger.approval(release_id, stage)
        assert decided is not None
        return decided

    def _refused(self, release_id: str, stage: str, answer: str, by: str, identity: str, why: str) -> None:
        self._ledger.add_event(
            release_id,
            "approval_refused",
            {"stage": stage, "answer": answer, "by": by, "identity": identity, "why": why},
            self._clock.now(),
        )
