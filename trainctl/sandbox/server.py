"""`trainctl sandbox serve`: the sandbox's emulated AWS over HTTP on loopback, for every client in every process.

moto's server mode (`ThreadedMotoServer`) answers from the same module-level backends `mock_aws` uses in-process
(`moto.backends.get_backend` -> the service's `BackendDict`; moto_server/werkzeug_app.py `create_backend_app`), so
the train running in this process and an HTTP client in another see one account. Its WSGI app is wrapped by
`EmulatorMiddleware`, which answers what the sandbox emulates at the HTTP layer with the same `emulators.dispatch`
the in-process botocore hook uses:

- JSON protocol operations (CodeBuild, CodeDeploy, CodeCommit, CloudWatch with `json`), found by `X-Amz-Target`
  (`<targetPrefix>.<Operation>`, the service model's metadata), and CloudWatch's `query` protocol (form `Action=`);
  the request is parsed and validated against botocore's input shape, the answer serialised with moto's serialisers.
- the stack's function URLs (AuthType AWS_IAM), at `<endpoint>/lambda-url/<logical id>/`: the caller is the IAM
  identity moto's STS gives the SigV4 access key, as Lambda authenticates it ("Invoking Lambda function URLs").

Every request holds the virtual clock while it is served (vtime: HTTP clients are non-participants), and a request
moto answers runs under moto_fixes' dispatch lock, as in-process requests do (moto's backends are not thread-safe).
"""

from __future__ import annotations

import functools
import io
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from moto.server import ThreadedMotoServer
from werkzeug.datastructures import MultiDict
from werkzeug.serving import make_server

from trainctl.sandbox import emulators, moto_fixes
from trainctl.sandbox.accounts import ACCOUNT, caller_account

if TYPE_CHECKING:
    from trainctl.sandbox.runner import _Run


OPERATOR_ROLE = "ReleaseManager"  # the example fleet's prod approvers: arn:aws:iam::<account>:role/ReleaseManager
StartResponse = Callable[..., Any]
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@functools.cache
def _target_prefixes(services: frozenset[str]) -> dict[str, str]:
    """X-Amz-Target prefix -> botocore service name, for the services the emulators answer."""
    import botocore.session

    session = botocore.session.get_session()
    found: dict[str, str] = {}
    for service in services:
        prefix = session.get_service_model(service).metadata.get("targetPrefix")
        if prefix:
            found[str(prefix)] = service
    return found


def _respond(start_response: StartResponse, status: int, body: bytes, content_type: str) -> list[bytes]:
    reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 502: "Bad Gateway"}.get(status, "")
    reason = reason or {503: "Service Unavailable"}.get(status, "")
    start_response(
        f"{status} {reason}".strip(),
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("x-amzn-RequestId", str(uuid.uuid4()))],
    )
    return [body]


class EmulatorMiddleware:
    """Routes emulated operations and function URLs to the sandbox; everything else to moto's app."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], run: _Run) -> None:
        self.app, self.run = app, run
        self.ready = threading.Event()  # set once the stack exists and the train started

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.ready.is_set():
            body = json.dumps({"__type": "ServiceUnavailableException", "message": "the sandbox is starting"})
            return _respond(start_response, 503, body.encode(), "application/x-amz-json-1.1")
        with self.run.clock.holding():  # no virtual time passes while a client acts
            path = str(environ.get("PATH_INFO", ""))
            if path.startswith("/lambda-url/"):
                return self._function_url(environ, start_response, path)
            answered = self._emulated(environ, start_response)
            if answered is not None:
                return answered
            with moto_fixes.dispatch_lock:
                return list(self.app(environ, start_response))  # consumed here: moto answers under the lock

    # --- AWS APIs the emulators answer ----------------------------------------------------------------------------

    def _emulated(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes] | None:
        world = self.run.world
        services = frozenset(service for service, _ in world.routes)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        content_type = str(environ.get("CONTENT_TYPE", ""))
        if target:
            prefix, _, operation = target.rpartition(".")
            service = _target_prefixes(services).get(prefix)
            if service is None or (service, operation) not in world.routes:
                return None
            protocol = "json"
        elif content_type.startswith("application/x-www-form-urlencoded") and _signing_service(environ) == "monitoring":
            operation = str(MultiDict(_parse_form(_read_body(environ))).get("Action", ""))
            if ("cloudwatch", operation) not in world.routes:
                return None
            service, protocol = "cloudwatch", "query"
        else:
            return None
        return self._answer(environ, start_response, service, operation, protocol)

    def _answer(
        self, environ: dict[str, Any], start_response: StartResponse, service: str, operation: str, protocol: str
    ) -> list[bytes]:
        from botocore.utils import parse_timestamp
        from botocore.validate import ParamValidator
        from moto.core.parse import JSONParser, QueryParser
        from moto.core.serialize import JSONSerializer, QuerySerializer
        from moto.core.utils import get_service_model

        model = get_service_model(service)
        operation_model = model.operation_model(operation)
        body = _read_body(environ)
        request = {
            "body": body,
            "headers": {},
            "method": environ.get("REQUEST_METHOD", "POST"),
            "url_params": {},
            "url_path": environ.get("PATH_INFO", "/"),
            "values": MultiDict(_parse_form(body)) if protocol == "query" else MultiDict(),
        }
        parser = (JSONParser if protocol == "json" else QueryParser)(operation_model, timestamp_parser=parse_timestamp)
        content_type = (
            f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}" if protocol == "json" else "text/xml"
        )
        try:
            params = parser.parse(request)
        except Exception as exc:  # a body that is not the protocol's: as AWS, a 400 naming it
            return self._error(start_response, protocol, 400, "SerializationException", str(exc), content_type)
        report = ParamValidator().validate(params, operation_model.input_shape)
        if report.has_errors():
            message = report.generate_report()
            return self._error(start_response, protocol, 400, "ValidationException", message, content_type)
        match = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
        account = caller_account(match.group(1) if match else None)
        answered = emulators.dispatch(self.run.world, service, operation, params, account)
        assert answered is not None  # routed above only when the emulators own the operation
        status, result = answered
        if "Error" in result:
            error = result["Error"]
            return self._error(start_response, protocol, status, error["Code"], error["Message"], content_type)
        result = {k: v for k, v in result.items() if k != "ResponseMetadata"}
        serializer = (JSONSerializer if protocol == "json" else QuerySerializer)(operation_model)
        serialised = serializer.serialize(result)
        text = serialised["body"]
        return _respond(start_response, 200, text.encode() if isinstance(text, str) else text, content_type)

    @staticmethod
    def _error(
        start_response: StartResponse, protocol: str, status: int, code: str, message: str, content_type: str
    ) -> list[bytes]:
        # AWS JSON 1.0/1.1 errors carry the code in `__type` (Smithy, "AWS JSON 1.1 protocol", operation error
        # serialization); query-protocol errors are an <ErrorResponse> document (botocore parsers.QueryParser).
        if protocol == "json":
            body = json.dumps({"__type": code, "message": message}).encode()
        else:
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            ).encode()
        return _respond(start_response, status, body, content_type)

    # --- function URLs --------------------------------------------------------------------------------------------

    def _function_url(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> list[bytes]:
        from trainctl.sandbox import function_urls

        stack = self.run.stack
        logical = path.removeprefix("/lambda-url/").split("/", 1)[0]
        function_logical = stack.function_urls.get(logical)
        if function_logical is None:
            return _respond(start_response, 404, b'{"Message":"Not Found"}', "application/json")
        caller = _caller(environ)
        if caller is None:  # AuthType AWS_IAM: an unsigned request is refused before the function runs
            return _respond(start_response, 403, b'{"Message":"Forbidden"}', "application/json")
        function = stack.function_versions.get(function_logical) or stack.physical(function_logical)
        text = _read_body(environ).decode("utf-8", errors="replace")
        status, answer = function_urls.invoke(function, caller, text, self.run.clock.now(), self.run.world.region)
        return _respond(start_response, status, json.dumps(answer).encode(), "application/json")


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back for whoever reads it next (moto's app)."""
    cached = environ.get("sandbox.body")
    if isinstance(cached, bytes):
        return cached
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["sandbox.body"] = body
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _parse_form(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _signing_service(environ: dict[str, Any]) -> str | None:
    """The service in the SigV4 credential scope: Credential=<key>/<date>/<region>/<service>/aws4_request."""
    match = re.search(r"Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/", str(environ.get("HTTP_AUTHORIZATION", "")))
    return match.group(1) if match else None


def _caller(environ: dict[str, Any]) -> str | None:
    """The IAM principal of the request's SigV4 access key, as moto's STS GetCallerIdentity answers for it."""
    from moto.sts.models import sts_backends

    match = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if match is None:
        return None
    _, arn, _ = sts_backends[ACCOUNT]["aws"].get_caller_identity(match.group(1), "us-east-1")
    return str(arn)


# --- the server ----------------------------------------------------------------------------------------------------


class SandboxServer(ThreadedMotoServer):  # type: ignore[misc]
    """moto's ThreadedMotoServer bound to 127.0.0.1 only, its app wrapped by EmulatorMiddleware."""

    def __init__(self, run: _Run, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self.middleware = EmulatorMiddleware(DomainDispatcherApplication(create_backend_app), run)
        self._socket: socket.socket | None = None

    def _server_entry(self) -> None:
        """ThreadedMotoServer's, with the wrapped app, on the socket start() bound."""
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        assert self._socket is not None
        self._server = make_server(
            self._ip_address,
            self._port,
            self.middleware,
            True,
            request_handler=MotoRequestHandler,
            fd=self._socket.fileno(),
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def start(self) -> None:
        """Bind here, in the caller's thread: a port in use raises OSError (werkzeug would exit its thread)."""
        self._socket = socket.create_server((self._ip_address, self._port))
        super().start()

    def stop(self) -> None:
        super().stop()
        if self._socket is not None:
            self._socket.close()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"


def operator_credentials() -> dict[str, str]:
    """A session of the ReleaseManager role (created here), so `trainctl approve` signs as an approver of the
    example fleet, and `aws sts get-caller-identity` says who the operator is."""
    import boto3

    iam, sts = boto3.client("iam"), boto3.client("sts")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName=OPERATOR_ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="operator", DurationSeconds=43200)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


def serve(
    fleet_path: Path,
    scenario: Any,
    root: Path,
    port: int,
    speed: float,
    stop: threading.Event,
    announce: Callable[[dict[str, str]], None],
    log_path: Path | None = None,
    scenario_source: str = "scenario",
) -> None:
    """Create the account, start the train, serve it until `stop` is set; `announce` gets the environment to export
    once every client can use it."""
    from trainctl.sandbox.runner import REGION, open_world

    with open_world(fleet_path, scenario, root, None, speed, log_path, scenario_source) as run:
        server = SandboxServer(run, port)  # bound now: the URL goes into the stack's outputs
        server.start()
        try:
            run.begin(url_base=server.url)
            try:
                with run.clock.holding():
                    credentials = operator_credentials()
                server.middleware.ready.set()
                announce(
                    {
                        "AWS_ENDPOINT_URL": server.url,
                        **credentials,
                        "AWS_DEFAULT_REGION": REGION,
                        "AWS_REGION": REGION,
                        "RELEASE_TRAIN_STACK": run.stack.name,
                    }
                )
                while not stop.wait(1.0):  # wakes for the signal handler; no outcome depends on it
                    pass
            finally:
                run.end()
        finally:
            server.stop()


def exports(environment: dict[str, str]) -> Iterator[str]:
    """`export NAME=value` lines for a POSIX shell."""
    import shlex

    for name, value in environment.items():
        yield f"export {name}={shlex.quote(value)}"
