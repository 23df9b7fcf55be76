"""Typed errors. The state machine matches them by class name in Retry/Catch, so names are API."""

from __future__ import annotations


class ReleaseTrainError(Exception):
    """Base of every error the train raises on purpose (never raised itself)."""


class InvalidInput(ReleaseTrainError):
    """An input (fleet, execution input, scenario, hook config) is malformed. Raised before any side effect."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


class NotAnApprover(ReleaseTrainError):
    """The caller's IAM identity is not among the stage's approvers: the answer is refused and recorded."""


class NoSuchApproval(ReleaseTrainError):
    """No approval request for that release and stage (a typo, or the stage was never entered)."""
