"""PlanRelease: validate input and fleet, pin commits, take the train lock, write the manifest."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import plan_service

logger = Logger()
service = plan_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(execution_arn=event.get("execution_arn"))
    return service.plan(event.get("input"), event["execution_arn"], event["execution_name"])
