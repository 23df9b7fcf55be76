"""RecordWave: write the wave's build results to the ledger; raise WaveFailed if any build failed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.wiring import record_wave_service

logger = Logger()
service = record_wave_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(release_id=event["release_id"], stage=event["stage"], wave=event["wave"])
    return service.record(event["release_id"], event["stage"], int(event["wave"]), event["results"])
