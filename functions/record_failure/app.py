"""RecordFailure: close the release BLOCKED or FAILED with the failed state and cause; free the lock."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import record_failure_service

logger = Logger()
service = record_failure_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(release_id=event["release_id"])
    return service.record_failure(event["release_id"], event["outcome"], event["error"], event["execution_arn"])
