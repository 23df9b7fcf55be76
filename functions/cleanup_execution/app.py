"""CleanupExecution: on ABORTED/FAILED/TIMED_OUT stop the release's builds, close the ledger, free the lock."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import CleanupExecutionEvent, parse_event
from release_train.wiring import cleanup_service

logger = Logger()
service = cleanup_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    detail = parse_event(CleanupExecutionEvent, event).detail
    logger.append_keys(execution_arn=detail.execution_arn, status=detail.status)
    return service.cleanup(detail.model_dump(by_alias=True))
