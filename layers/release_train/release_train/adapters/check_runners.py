"""The three check kinds as observations: Lambda Invoke, an HTTP request, an Express StartSyncExecution.

Adapters observe and time; release_train.domain.checks judges. Errors (AWS, connection) propagate: the service turns
them into an 'error' outcome.
"""

from __future__ import annotations

import time
from typing import Any

from release_train.adapters.hook_clients import LazyClient
from release_train.domain.checks import ExpressObservation, HttpObservation, InvokeObservation


class LambdaInvoker:
    def __init__(self, client: LazyClient | None = None) -> None:
        self._lambda = client or LazyClient("lambda", profile="user_code")

    def invoke(self, function_name: str, qualifier: str, payload: bytes, timeout_s: float) -> InvokeObservation:
        started = time.perf_counter()
        response = self._lambda.get().invoke(
            FunctionName=function_name, Qualifier=qualifier, InvocationType="RequestResponse", Payload=payload
        )
        body = response["Payload"].read()
        return InvokeObservation(
            function_error=response.get("FunctionError"),
            payload=body,
            duration_ms=(time.perf_counter() - started) * 1000,
            executed_version=response.get("ExecutedVersion"),
        )


class HttpRequester:
    """requests, imported on first use: it is the heaviest import of the hook and most suites never use it."""

    def __init__(self, session: Any | None = None) -> None:
        self._session = session

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpObservation:
        if self._session is None:
            import requests

            self._session = requests.Session()
        started = time.perf_counter()
        response = self._session.request(
            method, url, headers=headers, data=body, timeout=(min(3.0, timeout_s), timeout_s), allow_redirects=False
        )
        content: bytes = response.content
        return HttpObservation(
            status=int(response.status_code), body=content, latency_ms=(time.perf_counter() - started) * 1000
        )


class ExpressExecutor:
    def __init__(self, client: LazyClient | None = None) -> None:
        self._states = client or LazyClient("stepfunctions", profile="user_code")

    def start_sync(self, state_machine_arn: str, input_json: str, timeout_s: float) -> ExpressObservation:
        response = self._states.get().start_sync_execution(stateMachineArn=state_machine_arn, input=input_json)
        return ExpressObservation(
            status=str(response["status"]),
            output=response.get("output"),
            error=response.get("error"),
            cause=response.get("cause"),
        )
