"""Use cases the handlers call, one module per function (named like it). Each receives its adapters (ports); none
builds a client or reads the environment (wiring.py does)."""

from release_train.services.answer_approval import AnswerApprovalService
from release_train.services.break_glass import BreakGlassService
from release_train.services.cleanup_execution import CleanupService
from release_train.services.evaluate_gate import GateService
from release_train.services.finalize_release import FinalizeService
from release_train.services.load_wave import LoadWaveService
from release_train.services.plan_release import PlanService
from release_train.services.record_failure import RecordFailureService
from release_train.services.record_wave import RecordWaveService
from release_train.services.request_approval import ApprovalService

__all__ = [
    "AnswerApprovalService",
    "ApprovalService",
    "BreakGlassService",
    "CleanupService",
    "FinalizeService",
    "GateService",
    "LoadWaveService",
    "PlanService",
    "RecordFailureService",
    "RecordWaveService",
]
