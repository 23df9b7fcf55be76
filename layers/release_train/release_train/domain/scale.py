"""How a wave is split so that no Step Functions execution grows with the fleet (ADR 0007).

A Standard execution's history is capped at 25,000 events and every state's input/output at 256 KiB
(https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). A wave's builds therefore run in child
executions of at most CHUNK_SIZE services each; the release's own execution sees one Map iteration per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK_SIZE = 100  # services per BuildChunk execution
MAX_SERVICES = 2_000  # a fleet's size; bench/train_bench.py shows a release of it within BUDGET of both limits
HISTORY_CAP = 25_000
PAYLOAD_LIMIT = 256 * 1024
BUDGET = 0.5  # the share of either limit a release may use: the rest is margin for retries and growth


@dataclass(frozen=True)
class ChunkPlan:
    chunks: int
    chunk_concurrency: int  # builds at once inside one chunk execution
    parallel_chunks: int  # chunk executions at once; chunk_concurrency * parallel_chunks <= build_concurrency

    def to_dict(self) -> dict[str, object]:
        return {
            "chunks": list(range(self.chunks)),
            "chunk_concurrency": self.chunk_concurrency,
            "parallel_chunks": self.parallel_chunks,
        }


def chunk_plan(services: int, build_concurrency: int) -> ChunkPlan:
    if services < 1 or build_concurrency < 1:
        raise ValueError(f"a wave needs services >= 1 and build_concurrency >= 1, got {services}, {build_concurrency}")
    chunks = -(-services // CHUNK_SIZE)
    inside = min(build_concurrency, CHUNK_SIZE, services)
    # Never more builds at once than the fleet allows (CodeBuild's account concurrency queues the rest).
    parallel = max(1, min(chunks, build_concurrency // inside))
    return ChunkPlan(chunks, inside, parallel)


def chunk_of(items: list[str], chunk: int) -> list[str]:
    """The names (sorted by the caller) that chunk `chunk` builds."""
    return items[chunk * CHUNK_SIZE : (chunk + 1) * CHUNK_SIZE]


# History events, counted from the sandbox's histories (ADR 0007) and rounded up: the release's execution spends a
# fixed prologue/epilogue, then per stage (approval, RunWaves, tests, bake, gate), per wave (LoadWave, BuildChunks,
# RecordWave) and per chunk (a Map iteration around one startExecution.sync:2 task, or its ChunkFailed).
RELEASE_FIXED = 24
PER_STAGE = 36
PER_WAVE = 18
PER_CHUNK = 12
# A chunk execution: fixed, then per build; the worst build fails after every throttling retry the Build state
# allows (12 attempts, ~4 events each) and is summarised by BuildFailed.
CHUNK_FIXED = 20
PER_BUILD_WORST = 14 + 4 * 12


@dataclass(frozen=True)
class Estimate:
    release_events: int  # the release's own execution, on a path without retries of StartExecution
    chunk_events: int  # the largest chunk execution, every build failing after every retry
    payload_bytes: int  # the largest state payload: a chunk's builds as LoadChunk returns them, plus the state

    def problems(self) -> list[str]:
        events_budget, payload_budget = int(HISTORY_CAP * BUDGET), int(PAYLOAD_LIMIT * BUDGET)
        problems = []
        if self.release_events > events_budget:
            problems.append(
                f"a release would write about {self.release_events:,} history events in its execution, over "
                f"{events_budget:,} ({BUDGET:.0%} of Step Functions' {HISTORY_CAP:,}-event cap): use fewer stages or "
                "fewer waves"
            )
        if self.chunk_events > events_budget:
            problems.append(f"a chunk could write {self.chunk_events:,} history events, over {events_budget:,}")
        if self.payload_bytes > payload_budget:
            problems.append(
                f"a chunk's builds would be about {self.payload_bytes:,} bytes, over {payload_budget:,} ({BUDGET:.0%} "
                f"of Step Functions' {PAYLOAD_LIMIT:,}-byte payload limit): shorten service or project names"
            )
        return problems


STATE_OVERHEAD_BYTES = 2_048  # what a chunk's state carries besides its builds (ids, the Map's bookkeeping)


def estimate(stages: list[dict[int, int]], chunk_payloads: list[int]) -> Estimate:
    """`stages`: per stage, wave -> services in it; `chunk_payloads`: each chunk's builds as JSON bytes."""
    release = RELEASE_FIXED
    for waves in stages:
        release += PER_STAGE
        for services in waves.values():
            release += PER_WAVE + PER_CHUNK * -(-services // CHUNK_SIZE)
    largest_chunk = min(CHUNK_SIZE, max((n for waves in stages for n in waves.values()), default=0))
    payload = max(chunk_payloads, default=0) + STATE_OVERHEAD_BYTES
    return Estimate(release, CHUNK_FIXED + PER_BUILD_WORST * largest_chunk, payload)
