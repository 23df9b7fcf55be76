"""Step Functions reads: is an execution still running, which state failed, answer an approval."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from release_train.adapters.aws import error_code
from release_train.domain.release import ApprovalNotWaiting

_SKIP = {"RecordFailure", "RecordBlocked"}


class Executions:
    def __init__(self, client: Any) -> None:
        self._c = client

    def is_running(self, execution_arn: str) -> bool:
        try:
            return bool(self._c.describe_execution(executionArn=execution_arn)["status"] == "RUNNING")
        except self._c.exceptions.ExecutionDoesNotExist:
            return False

    def status(self, execution_arn: str) -> str | None:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED (or PENDING_REDRIVE); None if there is no such execution."""
        try:
            return str(self._c.describe_execution(executionArn=execution_arn)["status"])
        except self._c.exceptions.ExecutionDoesNotExist:
            return None

    def last_entered_state(self, execution_arn: str) -> str | None:
        """The state entered last before the failure handler: the one that failed (one page, newest first)."""
        page = self._c.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=100)
        for event in page.get("events", []):
            details = event.get("stateEnteredEventDetails")
            if details and details.get("name") not in _SKIP:
                return str(details["name"])
        return None

    def start(self, state_machine_arn: str, name: str, execution_input: dict[str, Any]) -> str:
        """StartExecution on the train's alias (a published version, as the schedule starts it); the execution ARN."""
        started = self._c.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
        return str(started["executionArn"])

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        """StopExecution (error <= 256, cause <= 32,768 characters: API reference); an ended execution stays ended."""
        try:
            self._c.stop_execution(executionArn=execution_arn, error=error[:256], cause=cause[:32768])
        except self._c.exceptions.ExecutionDoesNotExist:
            return

    def approve(self, task_token: str, output: dict[str, Any]) -> None:
        self._answer(lambda: self._c.send_task_success(taskToken=task_token, output=json.dumps(output)))

    def reject(self, task_token: str, error: str, cause: str) -> None:
        self._answer(lambda: self._c.send_task_failure(taskToken=task_token, error=error, cause=cause[:32768]))

    @staticmethod
    def _answer(call: Any) -> None:
        try:
            call()
        except ClientError as exc:
            code = error_code(exc)
            if code in {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}:
                raise ApprovalNotWaiting(f"{code}: {exc.response['Error'].get('Message', '')}") from exc
            raise
