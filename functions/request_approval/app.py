"""RequestApproval: keep the task token in the ledger and send the approval packet."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import RequestApprovalEvent, parse_event
from release_train.wiring import approval_service

logger = Logger()
service = approval_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(RequestApprovalEvent, event)
    logger.append_keys(release_id=request.release_id, stage=request.stage)
    return service.request(request.release_id, request.stage, request.task_token)
