"""FinalizeRelease: the release becomes the baseline; lock released; release notes sent."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import finalize_service

logger = Logger()
service = finalize_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(release_id=event["release_id"])
    return service.finalize(event["release_id"])
