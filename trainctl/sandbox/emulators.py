"""The emulated world: AWS APIs that moto lacks or gets wrong for a release train, answered in-process.

One module per emulated service, each a small class that owns its routes: `codebuild` (projects, builds, reports),
`codedeploy` (Lambda deployments and the traffic hooks), `sources` (CodeCommit branches, a loopback GitHub) and
`alarms` (alarm history). `World` only holds them together with the scenario and the clock.

They answer at botocore's `before-call` event, after botocore has validated the request against the real API model,
so a call the sandbox accepts is a call AWS would accept. Every answer is validated against botocore's output shape
for its operation before it is returned, so an emulated response can never have a shape AWS does not send
(a field in the wrong case, a member the model does not have, a wrong type): the sandbox raises instead.

`dispatch` is the one place an emulated call is answered: the botocore hook (`_answer`) for clients in this process,
and `sandbox serve`'s HTTP middleware (server.py) for clients in any process, which validates the request against the
same model first.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import botocore.handlers
import botocore.session
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.validate import ParamValidator

if TYPE_CHECKING:
    from release_train.domain.fleet import Fleet
    from trainctl.sandbox.alarms import Alarms
    from trainctl.sandbox.codebuild import CodeBuild
    from trainctl.sandbox.codedeploy import CodeDeploy
    from trainctl.sandbox.ecs import EcsDeployments
    from trainctl.sandbox.scenario import Scenario
    from trainctl.sandbox.sources import Sources
    from trainctl.sandbox.vtime import Scheduler

from trainctl.sandbox.accounts import ACCOUNT, caller_account

_caller = threading.local()

Route = Callable[[dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    """An AWS error response: `code` is the error code botocore's `ClientError` carries."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SandboxDefect(RuntimeError):
    """The sandbox itself is wrong (an emulated answer AWS would never give). Never caught: it must be seen."""


class World:
    """Everything the emulated services know. One per simulation."""

    def __init__(self, scenario: Scenario, fleet: Fleet | None, clock: Scheduler, region: str) -> None:
        from trainctl.sandbox.alarms import Alarms
        from trainctl.sandbox.codebuild import CodeBuild
        from trainctl.sandbox.codedeploy import CodeDeploy
        from trainctl.sandbox.ecs import EcsDeployments
        from trainctl.sandbox.sources import Sources

        self.scenario, self.fleet, self.clock, self.region = scenario, fleet, clock, region
        # stage -> the account it deploys to (the tools account for a stage that names none)
        self.stage_accounts: dict[str, str] = {s.name: s.account or ACCOUNT for s in (fleet.stages if fleet else ())}
        self.codebuild: CodeBuild = CodeBuild(self)
        self.codedeploy: CodeDeploy = CodeDeploy(self)
        self.ecs: EcsDeployments = EcsDeployments(self)
        self.sources: Sources = Sources(self)
        self.alarms: Alarms = Alarms(self)
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()
        self.defects: list[str] = []  # SandboxDefects raised during the run: the runner fails the simulation on any
        self.routes: dict[tuple[str, str], Route] = {
            **self.codebuild.routes(),
            **self.codedeploy.routes(),
            **self.sources.routes(),
            **self.alarms.routes(),
        }

    def client(self, service: str, account: str | None = None) -> Any:
        """One boto3 client per service and account for the emulators (creating one costs ~50 ms; botocore clients
        are thread-safe); `account` None is the tools account. Every call still goes through botocore and moto or
        the router, like any other."""
        from trainctl.sandbox.accounts import session_for

        key = (service, account or ACCOUNT)
        with self._clients_lock:
            made = self._clients.get(key)
            if made is None:
                made = self._clients[key] = session_for(account, self.region).client(service, region_name=self.region)
            return made

    def stage_account(self, stage: str | None) -> str:
        return self.stage_accounts.get(stage or "", ACCOUNT)

    @staticmethod
    def caller() -> str:
        """The account the emulated API call being answered was made in (`dispatch` sets it)."""
        return str(getattr(_caller, "account", ACCOUNT))

    def lambda_duration(self, logical_id: str) -> float:
        """Virtual seconds a state's Lambda invocation takes (scenario `lambdas`, keyed by the state's name)."""
        behaviour = self.scenario.lambdas.get(logical_id.removesuffix("Function"))
        return behaviour.duration.total_seconds() if behaviour else 0.0


_active: World | None = None


def activate(world: World | None) -> None:
    global _active
    _active = world


def active() -> World | None:
    return _active


@functools.cache
def _output_shape(service: str, operation: str) -> Any:
    return botocore.session.get_session().get_service_model(service).operation_model(operation).output_shape


def validate_output(service: str, operation: str, body: dict[str, Any]) -> None:
    """Raise SandboxDefect unless `body` fits botocore's output shape for the operation."""
    shape = _output_shape(service, operation)
    payload = {k: v for k, v in body.items() if k != "ResponseMetadata"}
    if shape is None:
        if payload:
            raise SandboxDefect(f"{service}.{operation} has no output, the sandbox answered {sorted(payload)}")
        return
    report = ParamValidator().validate(payload, shape)
    if report.has_errors():
        raise SandboxDefect(
            f"emulated {service}.{operation} answer does not fit the API model:\n{report.generate_report()}"
        )
    # botocore's validator does not check enums (a client must accept values newer than its model); an emulator
    # has no such excuse: every enum member it answers must be one the model names.
    strays = list(_outside_enums(payload, shape, operation))
    if strays:
        raise SandboxDefect(f"emulated {service}.{operation} answers values the API model's enums lack: {strays}")


def _outside_enums(value: Any, shape: Any, path: str) -> Iterator[str]:
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                yield from _outside_enums(value[name], member, f"{path}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _outside_enums(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _outside_enums(item, shape.value, f"{path}.{key}")
    elif shape.type_name == "string" and getattr(shape, "enum", None) and value not in shape.enum:
        yield f"{path}={value!r} (one of {shape.enum})"


def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["sandbox_api_params"] = dict(params)


def dispatch(
    world: World, service: str, operation: str, params: dict[str, Any], account: str = ACCOUNT
) -> tuple[int, dict[str, Any]] | None:
    """The one way an emulated operation is answered, for botocore's in-process hook and for `sandbox serve`'s HTTP
    middleware alike: (HTTP status, body) with `Error` for an ApiError; None when no emulator owns the operation.
    `account`: the caller's (accounts.caller_account), which the routes read as `world.caller()`."""
    route = world.routes.get((service, operation))
    if route is None:
        return None
    saved = getattr(_caller, "account", ACCOUNT)
    _caller.account = account
    try:
        body = route(params)
    except ApiError as exc:
        return exc.status, {
            "Error": {"Code": exc.code, "Message": exc.message},
            "ResponseMetadata": {"HTTPStatusCode": exc.status, "RequestId": str(uuid.uuid4())},
        }
    finally:
        _caller.account = saved
    try:
        validate_output(service, operation, body)
    except SandboxDefect as defect:
        world.defects.append(str(defect))  # the caller may swallow the error (a handler's except): the runner won't
        raise
    body.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "RequestId": str(uuid.uuid4())})
    return 200, body


def _answer(
    model: Any, context: dict[str, Any], request_signer: Any = None, **_: Any
) -> tuple[AWSResponse, dict[str, Any]] | None:
    world = _active
    if world is None:
        return None
    from trainctl.sandbox.accounts import access_key_of

    service, operation = model.service_model.service_name, model.name
    if (service, operation) not in world.routes:
        return None
    account = caller_account(access_key_of(request_signer))
    answered = dispatch(world, service, operation, context.get("sandbox_api_params", {}), account)
    if answered is None:
        return None
    status, body = answered
    return AWSResponse("https://sandbox.local", status, HTTPHeaders(), None), body


_INSTALLED = False


def install() -> None:
    """Hook into every botocore session created from now on (moto does the same for its own backends)."""
    global _INSTALLED
    if _INSTALLED:
        return
    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _remember_params))
    botocore.handlers.BUILTIN_HANDLERS.append(("before-call", _answer))
    _INSTALLED = True
