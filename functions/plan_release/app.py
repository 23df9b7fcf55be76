"""PlanRelease: validate input and fleet, pin commits, take the train lock, write the manifest."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import PlanReleaseEvent, parse_event
from release_train.wiring import plan_service

logger = Logger()
service = plan_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(PlanReleaseEvent, event)  # the envelope; PlanService validates the input itself
    logger.append_keys(execution_arn=request.execution_arn)
    return service.plan(request.input, request.execution_arn, request.execution_name)
