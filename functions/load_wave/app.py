"""LoadWave: the builds of one wave of one stage, from the pinned manifest (small payload)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import load_wave_service

logger = Logger()
service = load_wave_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(release_id=event["release_id"], stage=event["stage"], wave=event["wave"])
    return service.load(event["release_id"], event["stage"], int(event["wave"]))
