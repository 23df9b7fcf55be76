"""PlanRelease: validate input and fleet, pin commits, take the train lock, write the manifest."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import PlanReleaseEvent, parse_event
from release_train.wiring import plan_service

logger = Logger()
service = plan_service()

# What PlanRelease keeps of its timeout after the heads: a GitHub query already sent may take its read timeout on
# each of its attempts (3 x 10 s, adapters/sources.py), then the manifest, lock and notification are written.
RESERVE_S = 40.0


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(PlanReleaseEvent, event)  # the envelope; PlanService validates the input itself
    logger.append_keys(execution_arn=request.execution_arn)
    within = context.get_remaining_time_in_millis() / 1000 - RESERVE_S
    return service.plan(request.input, request.execution_arn, request.execution_name, within)
