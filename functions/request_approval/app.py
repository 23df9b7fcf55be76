"""RequestApproval: keep the task token in the ledger and send the approval packet."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import approval_service

logger = Logger()
service = approval_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(release_id=event["release_id"], stage=event["stage"])
    return service.request(event["release_id"], event["stage"], event["task_token"])
