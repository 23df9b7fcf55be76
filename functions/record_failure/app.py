"""RecordFailure: close the release BLOCKED or FAILED with the failed state and cause; free the lock."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import RecordFailureEvent, parse_event
from release_train.wiring import record_failure_service

logger = Logger()
service = record_failure_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(RecordFailureEvent, event)
    logger.append_keys(release_id=request.release_id)
    error = request.error.model_dump(by_alias=True)
    return service.record_failure(request.release_id, request.outcome, error, request.execution_arn)
