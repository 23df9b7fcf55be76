"""Emulated CloudWatch alarm history (moto stores alarms and their state but has no DescribeAlarmHistory).

Alarm *state* stays in moto (`put_metric_alarm`, `set_alarm_state`, `describe_alarms`); every change the scenario
makes goes through `set_state` here, which also records the history item AWS would write. History items follow the
DescribeAlarmHistory API reference: HistoryItemType StateUpdate, HistoryData a JSON document with old and new state.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from trainctl.sandbox.accounts import ACCOUNT
from trainctl.sandbox.emulators import Route

if TYPE_CHECKING:
    from trainctl.sandbox.emulators import World


class Alarms:
    def __init__(self, world: World) -> None:
        self.world = world
        # (account, name) -> (time, old, new): alarms live in their stage's account, and names repeat across accounts
        self.history: dict[tuple[str, str], list[tuple[datetime, str, str]]] = {}

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("cloudwatch", "DescribeAlarmHistory"): self.describe_alarm_history}

    def create_healthy(self, name: str, account: str | None = None) -> None:
        cloudwatch = self.world.client("cloudwatch", account)
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="sandbox start")

    def set_state(
        self, name: str, new: Literal["OK", "ALARM", "INSUFFICIENT_DATA"], reason: str, account: str | None = None
    ) -> None:
        cloudwatch = self.world.client("cloudwatch", account)
        old = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=new, StateReason=reason)
        if old != new:
            self.history.setdefault((account or ACCOUNT, name), []).append((self.world.clock.now(), old, new))

    def firing(self, names: list[str], account: str | None = None) -> list[str]:
        if not names:
            return []
        alarms = self.world.client("cloudwatch", account).describe_alarms(AlarmNames=names)["MetricAlarms"]
        return sorted(a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM")

    def describe_alarm_history(self, params: dict[str, Any]) -> dict[str, Any]:
        start, end = params.get("StartDate"), params.get("EndDate")
        items = []
        for at, old, new in self.history.get((self.world.caller(), params.get("AlarmName", "")), []):
            if (start and at < start) or (end and at > end):
                continue
            items.append(
                {
                    "AlarmName": params["AlarmName"],
                    "AlarmType": "MetricAlarm",
                    "Timestamp": at,
                    "HistoryItemType": "StateUpdate",
                    "HistorySummary": f"Alarm updated from {old} to {new}",
                    "HistoryData": json.dumps(
                        {"version": "1.0", "oldState": {"stateValue": old}, "newState": {"stateValue": new}}
                    ),
                }
            )
        # Newest first unless ScanBy says otherwise (DescribeAlarmHistory API reference: ScanBy, default
        # TimestampDescending).
        if params.get("ScanBy", "TimestampDescending") == "TimestampDescending":
            items.reverse()
        return {"AlarmHistoryItems": items}
