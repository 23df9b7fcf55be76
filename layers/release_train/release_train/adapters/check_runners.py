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


UNREACHABLE = "unreachable from the hook (is the hook in the load balancer's VPC? HookSubnetIds)"


class Unreachable(Exception):
    """No TCP connection could be made: typically an internal load balancer seen from outside its VPC."""


def http_session() -> Any:
    """A requests Session whose HTTPS connections use the request's Host header as the TLS server name.

    A check that names its host reaches the load balancer's DNS name but must present the service's name in SNI (the
    listener picks the certificate by it) and verify the certificate against that name. requests' documented hook
    for this is `HTTPAdapter.build_connection_pool_key_attributes` (requests >= 2.32.2): the urllib3 pool keys
    `server_hostname` (SNI) and `assert_hostname` (verification) are set there, per connection pool. An older requests
    never calls it: verification then runs against the load balancer's name and fails (closed, not open).
    """
    import requests
    from requests.adapters import HTTPAdapter

    class ServerNameAdapter(HTTPAdapter):
        def build_connection_pool_key_attributes(  # typeshed's _PoolKwargs omits urllib3's TLS name keys
            self, request: requests.PreparedRequest, verify: bool | str, cert: str | tuple[str, str] | None = None
        ) -> Any:
            host_params, typed_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            pool_kwargs: dict[str, Any] = dict(typed_kwargs)
            host = request.headers.get("Host")
            if host and host_params["scheme"] == "https":
                name = str(host).split(":")[0]
                pool_kwargs["server_hostname"] = name
                pool_kwargs["assert_hostname"] = name
            return host_params, pool_kwargs

    session = requests.Session()
    session.mount("https://", ServerNameAdapter())
    return session


class HttpRequester:
    """requests, imported on first use: it is the heaviest import of the hook and most suites never use it.

    verify: requests' `verify` (True, or a CA bundle path: tests use a private CA), passed per request because a
    session's own `verify` yields to REQUESTS_CA_BUNDLE from the environment."""

    def __init__(self, session: Any | None = None, verify: bool | str = True) -> None:
        self._session = session
        self._verify = verify

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpObservation:
        import requests

        if self._session is None:
            self._session = http_session()
        started = time.perf_counter()
        try:
            response = self._session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=(min(3.0, timeout_s), timeout_s),
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.exceptions.ConnectTimeout as exc:
            # A private IP that drops our SYNs: the classic internal load balancer seen from outside its VPC.
            raise Unreachable(
                f"{UNREACHABLE}: no connection to {_origin(url)} within {min(3.0, timeout_s):g} s"
            ) from exc
        content: bytes = response.content
        return HttpObservation(
            status=int(response.status_code), body=content, latency_ms=(time.perf_counter() - started) * 1000
        )


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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
