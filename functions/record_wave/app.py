"""RecordWave: a failed build's summary (BuildChunk), a chunk's records (BuildChunk), or the wave's verdict (the
release's execution: WaveFailed if any build of the wave failed). Which one is told by the event's keys."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from release_train.events import RecordChunkEvent, SummariseFailureEvent, parse_event, record_wave_model
from release_train.services.record_wave import summarise_failure
from release_train.wiring import record_wave_service

logger = Logger()
service = record_wave_service()


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    request = parse_event(record_wave_model(event), event)
    logger.append_keys(release_id=request.release_id, stage=request.stage, wave=request.wave)
    if isinstance(request, SummariseFailureEvent):
        failed = request.failed
        return summarise_failure(failed.service, failed.error, failed.cause)
    if isinstance(request, RecordChunkEvent):
        results = [r.model_dump() for r in request.results]
        return service.record_chunk(request.release_id, request.stage, request.wave, request.chunk, results)
    chunks = [c.model_dump() for c in request.chunks]
    return service.record(request.release_id, request.stage, request.wave, chunks)
