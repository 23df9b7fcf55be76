"""FinalizeRelease: the release becomes the baseline; lock released; release notes sent."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import FinalizeReleaseEvent, parse_event
from release_train.wiring import finalize_service

logger = Logger()
service = finalize_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(FinalizeReleaseEvent, event)
    logger.append_keys(release_id=request.release_id)
    return service.finalize(request.release_id)
