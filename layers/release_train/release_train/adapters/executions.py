"""Step Functions reads: is an execution still running, which state failed, answer an approval."""

from __future__ import annotations

from typing import Any

_SKIP = {"RecordFailure", "RecordBlocked"}


class Executions:
    def __init__(self, client: Any) -> None:
        self._c = client

    def is_running(self, execution_arn: str) -> bool:
        try:
            return bool(self._c.describe_execution(executionArn=execution_arn)["status"] == "RUNNING")
        except self._c.exceptions.ExecutionDoesNotExist:
            return False

    def last_entered_state(self, execution_arn: str) -> str | None:
        """The state entered last before the failure handler: the one that failed (one page, newest first)."""
        page = self._c.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=100)
        for event in page.get("events", []):
            details = event.get("stateEnteredEventDetails")
            if details and details.get("name") not in _SKIP:
                return str(details["name"])
        return None

    def approve(self, task_token: str, output: dict[str, Any]) -> None:
        import json

        self._c.send_task_success(taskToken=task_token, output=json.dumps(output))

    def reject(self, task_token: str, error: str, cause: str) -> None:
        self._c.send_task_failure(taskToken=task_token, error=error, cause=cause[:32768])
