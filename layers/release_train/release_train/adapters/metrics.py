"""The train's CloudWatch metrics, as Embedded Metric Format lines in the function's logs (Powertools Metrics).

EMF needs no `cloudwatch:PutMetricData` grant and no API call: CloudWatch Logs extracts the metrics from the log
line, so no role in template.yaml holds PutMetricData ("Metrics are created asynchronously by the CloudWatch service",
https://docs.powertools.aws.dev/lambda/python/latest/core/metrics/; "You don't need the cloudwatch:PutMetricData
permission. EMF uses the same Amazon CloudWatch Logs permissions that the execution role already needs for logs",
https://docs.aws.amazon.com/lambda/latest/dg/web-functions-emf.html).

Cardinality: every metric has the dimension `fleet`; two add one closed-enum dimension (`status`: the five terminal
release statuses; `verdict`: PROMOTE/BLOCK). Never a release id, a service or a stage: each distinct dimension value
is a separate custom metric (billed, and unbounded for ids).

A metric that cannot be written is logged and dropped: it never fails the release it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from release_train.domain.fleet import utc
from release_train.domain.release import Status, Verdict

NAMESPACE = "ReleaseTrain"
FLEET = "fleet"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    """One metric the train emits: what the dashboard and the tests read (one list, CATALOGUE)."""

    name: str
    unit: MetricUnit
    dimension: str | None = None  # the one extra dimension besides `fleet`, if any
    values: tuple[str, ...] = ()  # the values that dimension takes

    @property
    def dimensions(self) -> tuple[str, ...]:
        return (FLEET, self.dimension) if self.dimension else (FLEET,)


# One metric with a `status` dimension rather than one metric per status: the five values are a closed enum (no
# cardinality risk), a dashboard stacks them in one widget, and their Sum is "releases ended" without an expression.
RELEASES_ENDED = MetricSpec("ReleasesEnded", MetricUnit.Count, "status", tuple(s.value for s in Status if s.terminal))
BUILD_FAILURES = MetricSpec("BuildFailures", MetricUnit.Count)  # per recorded wave: its failed builds (0 included)
GATE_VERDICTS = MetricSpec("GateVerdicts", MetricUnit.Count, "verdict", tuple(v.value for v in Verdict))
APPROVAL_WAIT = MetricSpec("ApprovalWaitSeconds", MetricUnit.Seconds)  # requested -> answered
LEAD_TIME = MetricSpec("LeadTimeSeconds", MetricUnit.Seconds)  # release created -> SUCCEEDED
CATALOGUE = (RELEASES_ENDED, BUILD_FAILURES, GATE_VERDICTS, APPROVAL_WAIT, LEAD_TIME)


class MetricsPort(Protocol):
    def release_ended(self, fleet: str, status: Status) -> None: ...
    def build_failures(self, fleet: str, failed: int) -> None: ...
    def gate_verdict(self, fleet: str, verdict: str) -> None: ...
    def approval_wait(self, fleet: str, requested_at: str, answered: datetime) -> None: ...
    def lead_time(self, fleet: str, created_at: str, succeeded: datetime) -> None: ...


class NoMetrics:
    """For services built without metrics (tests, trainctl); production wiring passes TrainMetrics."""

    def release_ended(self, fleet: str, status: Status) -> None:
        pass

    def build_failures(self, fleet: str, failed: int) -> None:
        pass

    def gate_verdict(self, fleet: str, verdict: str) -> None:
        pass

    def approval_wait(self, fleet: str, requested_at: str, answered: datetime) -> None:
        pass

    def lead_time(self, fleet: str, created_at: str, succeeded: datetime) -> None:
        pass


class TrainMetrics:
    """One EMF line per metric, flushed at once: services run inside handlers that do not decorate with
    `log_metrics`, and a line printed now is not lost if the invocation fails later. POWERTOOLS_METRICS_DISABLED (the
    sandbox sets it) silences them."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self._namespace = namespace

    def release_ended(self, fleet: str, status: Status) -> None:
        self._put(RELEASES_ENDED, fleet, 1, status.value)

    def build_failures(self, fleet: str, failed: int) -> None:
        self._put(BUILD_FAILURES, fleet, failed)

    def gate_verdict(self, fleet: str, verdict: str) -> None:
        self._put(GATE_VERDICTS, fleet, 1, verdict)

    def approval_wait(self, fleet: str, requested_at: str, answered: datetime) -> None:
        self._put(APPROVAL_WAIT, fleet, lambda: _seconds(requested_at, answered))

    def lead_time(self, fleet: str, created_at: str, succeeded: datetime) -> None:
        self._put(LEAD_TIME, fleet, lambda: _seconds(created_at, succeeded))

    def _put(self, spec: MetricSpec, fleet: str, value: float | Callable[[], float], extra: str | None = None) -> None:
        try:
            if callable(value):  # computed inside the try: an unreadable timestamp drops the metric, nothing else
                value = value()
            if (extra is None) != (spec.dimension is None) or (extra is not None and extra not in spec.values):
                raise ValueError(f"{spec.name}: {spec.dimension}={extra!r} is not one of {spec.values}")
            # service="": no Powertools `service` dimension (POWERTOOLS_SERVICE_NAME would add one to every metric,
            # and the dashboard's SEARCH expressions match exactly the dimension sets in CATALOGUE).
            emf = AmazonCloudWatchEMFProvider(namespace=self._namespace, service="")
            emf.add_dimension(name=FLEET, value=fleet)
            if spec.dimension and extra is not None:
                emf.add_dimension(name=spec.dimension, value=extra)
            emf.add_metric(name=spec.name, unit=spec.unit, value=value)
            emf.flush_metrics()
        except Exception:
            _log.warning("metric %s for fleet %s not written", spec.name, fleet, exc_info=True)


def _seconds(since_iso: str, until: datetime) -> float:
    """Ledger timestamps are ISO 8601 (UTC, written by services.context.iso); never negative (clock skew)."""
    return max((utc(until) - utc(datetime.fromisoformat(since_iso))).total_seconds(), 0.0)
