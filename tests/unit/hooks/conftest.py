"""Fixtures for the traffic hooks: moto (SSM, Lambda, DynamoDB, Step Functions), a fake CodeDeploy, a loopback
HTTP server, and the real hook handler modules loaded fresh for each test.

CodeDeploy is faked with botocore `before-call` handlers on the default session, the way the sandbox emulates it:
moto answers GetDeployment but never for a Lambda AppSpec we control, and raises NotImplementedError on
PutLifecycleEventHookExecutionStatus (MOTO_NOTES). The fake answers from tests/fixtures/aws, in AWS's shapes
(GetDeployment names the AppSpec by its sha256 only, GetApplicationRevision returns its content), and checks every
answer against botocore's output shape: outside Stubber nothing else would.
moto 5.2.5 also has no StartSyncExecution (404 "Not yet implemented"): `_start_sync_via_moto` answers it from a moto
StartExecution of the same Express state machine.
moto's Lambda without Docker echoes the request (and the sandbox's moto fixes, once applied in this process, run
registered handlers instead): `_echo_invoke` pins one behaviour for these tests, on moto's functions and versions.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from tests.conftest import ROOT
from tests.fixtures import aws_fixture, aws_fixture_path, checked_answer

DATA = Path(__file__).parent / "data"
IDEMPOTENCY_TABLE = "hook-idempotency"
FUNCTION = "company-svc-create"
ACCOUNT = "123456789012"


def data_text(name: str, **replacements: str) -> str:
    text = (DATA / name).read_text()
    for key, value in replacements.items():
        text = text.replace(f"__{key}__", value)
    return text


def _ok(service: str, operation: str, parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://fake", 200, {}, None), checked_answer(service, operation, parsed)  # type: ignore[arg-type]


def _error(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://fake", status, {}, None), {"Error": {"Code": code, "Message": message}}  # type: ignore[arg-type]


@dataclass
class FakeCodeDeploy:
    """GetDeployment / GetApplicationRevision / GetDeploymentGroup from fixtures; PutLifecycleEventHookExecutionStatus
    recorded."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    revisions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (application, sha256) -> answer
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    reports: list[dict[str, str]] = field(default_factory=list)
    revision_requests: list[dict[str, Any]] = field(default_factory=list)
    put_error: str | None = None  # error code PutLifecycleEventHookExecutionStatus answers with
    get_error: str | None = None
    completed: set[str] = field(default_factory=set)  # execution ids CodeDeploy considers done

    def install(self, session: boto3.Session) -> None:
        # botocore-stubs types handlers as returning None; a before-call handler's answer replaces the HTTP call.
        events: Any = session.events
        events.register("before-call.codedeploy.GetDeployment", self._get_deployment)
        events.register("before-call.codedeploy.GetApplicationRevision", self._get_application_revision)
        events.register("before-call.codedeploy.GetDeploymentGroup", self._get_deployment_group)
        events.register("before-call.codedeploy.PutLifecycleEventHookExecutionStatus", self._put_status)

    def add_deployment(self, deployment_id: str, case: str = "lambda", **replacements: str) -> None:
        """GetDeployment/<case>.json, and its AppSpec from GetApplicationRevision/<case>.json when there is one."""
        answer = aws_fixture("codedeploy", "GetDeployment", case, DEPLOYMENT_ID=deployment_id, **replacements)
        self.deployments[deployment_id] = answer
        if aws_fixture_path("codedeploy", "GetApplicationRevision", case).exists():
            revision = aws_fixture("codedeploy", "GetApplicationRevision", case, DEPLOYMENT_ID=deployment_id)
            sha256 = revision["revision"]["appSpecContent"]["sha256"]
            self.revisions[(revision["applicationName"], sha256)] = revision

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.reports]

    def _get_deployment(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        deployment_id = json.loads(params["body"])["deploymentId"]
        if self.get_error:
            return _error(self.get_error, f"{deployment_id}: injected")
        if deployment_id not in self.deployments:
            return _error("DeploymentDoesNotExistException", f"deployment {deployment_id} does not exist")
        return _ok("codedeploy", "GetDeployment", self.deployments[deployment_id])

    def _get_application_revision(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        self.revision_requests.append(body)
        revision = body["revision"]
        if revision.get("revisionType") != "AppSpecContent":
            return _error("InvalidRevisionException", f"revisionType {revision.get('revisionType')!r}")
        key = (body["applicationName"], revision.get("appSpecContent", {}).get("sha256", ""))
        if key not in self.revisions:
            return _error("RevisionDoesNotExistException", f"no revision {key}")
        return _ok("codedeploy", "GetApplicationRevision", self.revisions[key])

    def _get_deployment_group(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        answer = {"deploymentGroupInfo": self.groups[(body["applicationName"], body["deploymentGroupName"])]}
        return _ok("codedeploy", "GetDeploymentGroup", answer)

    def _put_status(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        self.reports.append(body)
        execution_id = body["lifecycleEventHookExecutionId"]
        if self.put_error:
            return _error(self.put_error, "injected")
        if execution_id in self.completed:
            return _error("LifecycleEventAlreadyCompletedException", f"{execution_id} already completed")
        self.completed.add(execution_id)
        answer = aws_fixture(
            "codedeploy", "PutLifecycleEventHookExecutionStatus", "reported", EXECUTION_ID=execution_id
        )
        return _ok("codedeploy", "PutLifecycleEventHookExecutionStatus", answer)


def _echo_invoke(
    self: LambdaSimpleBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    """The checked function: returns its event; {"raise": "..."} makes it fail like an unhandled exception."""
    function = self.get_function(function_name, qualifier)  # unknown function or version: moto's 404
    event = json.loads(body) if body else {}
    response_headers["x-amz-executed-version"] = function.version
    if isinstance(event, dict) and "raise" in event:
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": "Exception", "errorMessage": event["raise"]}).encode()
    return json.dumps(event).encode()


def _start_sync_via_moto(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    body = json.loads(params["body"])
    sfn = boto3.client("stepfunctions", region_name="us-east-1")  # a plain client: not intercepted by this handler
    arn = sfn.start_execution(stateMachineArn=body["stateMachineArn"], input=body.get("input", "{}"))["executionArn"]
    deadline = time.monotonic() + 60  # a defect guard: an Express machine of one Pass state ends at once
    described: dict[str, Any] = {"status": "RUNNING"}
    while (described := dict(sfn.describe_execution(executionArn=arn)))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    keys = ("executionArn", "stateMachineArn", "status", "output", "error", "cause", "startDate", "stopDate", "input")
    return _ok("stepfunctions", "StartSyncExecution", {k: described[k] for k in keys if k in described})


@dataclass
class Loopback:
    base_url: str
    hits: Counter[str]


class _Handler(BaseHTTPRequestHandler):
    hits: Counter[str]

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        if self.path == "/slow":
            time.sleep(2)
        status, body = {"/health": (200, {"status": "ok"}), "/slow": (200, {"status": "late"})}.get(
            self.path, (500, {"message": "boom"})
        )
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A real HTTP server on 127.0.0.1: /health 200, /slow 200 after 2 s, anything else 500."""
    hits: Counter[str] = Counter()
    handler = type("Handler", (_Handler,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Loopback(f"http://127.0.0.1:{server.server_address[1]}", hits)
    server.shutdown()
    server.server_close()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodeDeploy]:
    """moto for everything but CodeDeploy (faked) and StartSyncExecution (answered from moto StartExecution)."""
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ReleaseTrain")
    monkeypatch.setenv("HOOK_SAFETY_MARGIN_MS", "1000")
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", _echo_invoke)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        boto3.setup_default_session(region_name="us-east-1")
        session = boto3.DEFAULT_SESSION
        assert session is not None
        fake = FakeCodeDeploy()
        fake.install(session)
        events: Any = session.events
        events.register("before-call.sfn.StartSyncExecution", _start_sync_via_moto)
        _create_idempotency_table()
        _create_function()
        yield fake
    boto3.DEFAULT_SESSION = None  # the next test starts from a clean default session


def _create_idempotency_table() -> None:
    boto3.client("dynamodb").create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def _create_function() -> None:
    role = boto3.client("iam").create_role(RoleName="svc", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    client = boto3.client("lambda")
    client.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
        Publish=True,
    )
    client.publish_version(FunctionName=FUNCTION)  # version 2: the deployment's TargetVersion


def create_state_machine(name: str, definition: dict[str, Any]) -> str:
    arn: str = boto3.client("stepfunctions").create_state_machine(
        name=name,
        type="EXPRESS",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps(definition),
    )["stateMachineArn"]
    return arn


def put_checks(checks_key: str, template: str, **replacements: str) -> None:
    boto3.client("ssm").put_parameter(
        Name=f"/release-train/checks/{checks_key}", Type="String", Value=data_text(template, **replacements)
    )


def load_hook(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh: it reads its environment at import, like a cold start."""
    spec = importlib.util.spec_from_file_location(f"{name}_hook_app", ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
