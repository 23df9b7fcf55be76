"""CloudWatch alarm evidence: current state and whether each went to ALARM inside a time window."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from release_train.domain.fleet import AlarmSelector
from release_train.domain.release import AlarmEvidence


class Alarms:
    def __init__(self, client: Any) -> None:
        self._c = client

    def evidence(self, selector: AlarmSelector, start: datetime, end: datetime) -> list[AlarmEvidence]:
        alarms = self._select(selector)
        return [
            AlarmEvidence(
                name=a["AlarmName"],
                state_now=a["StateValue"],
                fired_during_bake=self._fired(a["AlarmName"], start, end),
            )
            for a in alarms
        ]

    def _select(self, selector: AlarmSelector) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"AlarmTypes": ["MetricAlarm", "CompositeAlarm"]}
        if selector.prefix:
            kwargs["AlarmNamePrefix"] = selector.prefix
        alarms: list[dict[str, Any]] = []
        for page in self._c.get_paginator("describe_alarms").paginate(**kwargs):
            alarms.extend(page.get("MetricAlarms", []))
            alarms.extend(page.get("CompositeAlarms", []))
        if selector.tag:
            wanted = selector.tag
            alarms = [a for a in alarms if wanted.items() <= self._tags(a["AlarmArn"]).items()]
        return alarms

    def _tags(self, arn: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._c.list_tags_for_resource(ResourceARN=arn).get("Tags", [])}

    def _fired(self, name: str, start: datetime, end: datetime) -> bool:
        for page in self._c.get_paginator("describe_alarm_history").paginate(
            AlarmName=name, HistoryItemType="StateUpdate", StartDate=start, EndDate=end
        ):
            for item in page.get("AlarmHistoryItems", []):
                data = json.loads(item.get("HistoryData") or "{}")
                if data.get("newState", {}).get("stateValue") == "ALARM":
                    return True
        return False
