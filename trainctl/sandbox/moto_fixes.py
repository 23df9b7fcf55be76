"""Every change the sandbox makes to moto, in one place. Each has a regression test in tests/sandbox/test_moto_fixes.py.

Tested against moto >=5.2.3,<5.3 (pinned in pyproject.toml). Numbers refer to ../shared/MOTO_NOTES.md.

1. Lambda without Docker echoes the payload (note 1): run the handler in-process (lambda_runtime).
2. `codebuild:startBuild.sync` is unsupported (note 2): a CodeBuild service integration with `.sync`, which on stop
   calls StopBuild as Step Functions does (note 9).
3. Waits, retry back-offs and callback timeouts run in virtual time (clock), so a 2-day bake takes a blink.
4. History timestamps are virtual too, so the console view of a simulated run reads like AWS.
5. StopExecution during a Map ends ABORTED, not FAILED (note 9).
6. StopExecution keeps its error and cause; DescribeExecution and the status-change event show them (note 11).
7. SendTaskFailure keeps its cause (note 11): a rejected approval's reason reaches the Catch and the ledger.
8. GetExecutionHistory honours reverseOrder, maxResults and nextToken (RecordFailure reads the newest page).
9. The interpreter's service clients are made once per service and region, not once per task (speed only: moto's
   clients all carry the same fixed configuration and fake credentials, and botocore clients are thread-safe).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.responses import ActionResult, EmptyResult
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback,
    state_task_service_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.utils import boto_client as _boto_client_module
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.responses import StepFunctionResponse

from trainctl.sandbox import clock as vclock
from trainctl.sandbox import emulators
from trainctl.sandbox.lambda_runtime import registry

# --- 1. Lambda in-process -----------------------------------------------------------------------------------------


def _invoke_in_process(
    self: LambdaSimpleBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    payload = json.loads(body) if body else {}
    result, errored = registry.invoke(fn.function_name, payload)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-executed-version"] = qualifier if qualifier and qualifier[0].isdigit() else "$LATEST"
    return result.encode()


# --- 2. CodeBuild .sync -------------------------------------------------------------------------------------------

_TERMINAL_OK: Final = {"SUCCEEDED"}
_TERMINAL: Final = {"SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"}


def _sfn_cased(value: Any) -> Any:
    """Step Functions returns CodeBuild's output with PascalCase keys and epoch-second timestamps."""
    if isinstance(value, dict):
        return {k[:1].upper() + k[1:]: _sfn_cased(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sfn_cased(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.timestamp()
    return value


def _boto_cased(value: Any) -> Any:
    """`ProjectName` -> `projectName`: Step Functions accepts either casing for optimized integrations."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _boto_cased(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_boto_cased(v) for v in value]
    return value


@functools.cache
def _start_build_parameters() -> frozenset[str]:
    """Read once: moto asks on every evaluation of the task, and a fresh session reloads the whole API model."""
    import botocore.session

    shape = botocore.session.get_session().get_service_model("codebuild").operation_model("StartBuild")
    members = shape.input_shape.members if shape.input_shape is not None else {}
    return frozenset(name[:1].upper() + name[1:] for name in members)


class StateTaskServiceCodeBuild(StateTaskServiceCallback):  # type: ignore[misc]
    def __init__(self) -> None:
        # WaitForTaskToken is listed only so moto builds the callback endpoint its .sync path always tears down
        # (it dereferences it unconditionally); the ASL never uses codebuild with .waitForTaskToken.
        super().__init__(supported_integration_patterns={ResourceCondition.Sync, ResourceCondition.WaitForTaskToken})

    def _get_supported_parameters(self) -> set[str] | None:
        # Every StartBuild request member, in Step Functions casing (the request is validated by botocore later).
        if self.resource.api_action.lower() != "startbuild":
            return None
        return set(_start_build_parameters())

    def _client(self, resource_runtime_part: Any, state_credentials: Any) -> Any:
        return _cached_boto_client_for(
            service="codebuild", region=resource_runtime_part.region, state_credentials=state_credentials
        )

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        response = getattr(ex, "response", None)
        if isinstance(response, dict) and "Error" in response:
            name = f"CodeBuild.{response['Error']['Code']}"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=name,
                        cause=response["Error"].get("Message", ""),
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        client = self._client(resource_runtime_part, state_credentials)
        action = self._get_boto_service_action()
        response = getattr(client, action)(**_boto_cased(normalised_parameters))
        response.pop("ResponseMetadata", None)
        env.stack.append(_sfn_cased(response))

    def _eval_sync(
        self,
        env: Any,
        sync_resolver: Callable[[], Any] | None,
        timeout_seconds: int | None,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        outcome = super()._eval_sync(
            env=env,
            sync_resolver=sync_resolver,
            timeout_seconds=timeout_seconds,
            callback_endpoint=callback_endpoint,
            heartbeat_endpoint=heartbeat_endpoint,
        )
        if sync_resolver is not None and not env.is_running():
            # Stopped before moto polled even once (its loop checks is_running first): the build still runs.
            sync_resolver()
        return outcome

    def _build_sync_resolver(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> Callable[[], Any] | None:
        started = env.stack.pop()
        build_id = started["Build"]["Id"]
        client = self._client(resource_runtime_part, state_credentials)
        world, clock = emulators.active(), vclock.active()

        stopped = False

        def resolve() -> Any:
            nonlocal stopped
            if world is not None and clock is not None and env.is_running():
                # Wait (in virtual time) exactly until the emulated build ends, or until the execution stops.
                clock.sleep(world.seconds_left(build_id), env.program_state_event, env.is_running)
            if not env.is_running():
                # The execution was stopped while the build ran: Step Functions stops the build (best effort).
                if not stopped:
                    stopped = True
                    client.stop_build(id=build_id)
                return None
            build = client.batch_get_builds(ids=[build_id])["builds"][0]
            status = build["buildStatus"]
            if status not in _TERMINAL:
                return None
            output = {"Build": _sfn_cased(build)}
            if status in _TERMINAL_OK:
                return output
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(output["Build"]),
                        )
                    ),
                )
            )

        return resolve


_original_factory = state_task_service_factory.state_task_service_for


def _service_for(service_name: str) -> Any:
    if service_name == "codebuild":
        return StateTaskServiceCodeBuild()
    return _original_factory(service_name)


# --- 3 + 4. virtual time ------------------------------------------------------------------------------------------


def _wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    clock = vclock.active()
    if clock is None:
        _original_wait_interval(self, env, wait_seconds)
        return None
    clock.sleep(wait_seconds, env.program_state_event, env.is_running)
    return None


class _ScaledTime:
    """Stands in for the `time` module inside the retrier: back-off sleeps pass in virtual time."""

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        clock = vclock.active()
        if clock is None:
            import time

            time.sleep(seconds)
        else:
            clock.sleep(seconds)


def _wait_for_task_token_timeout(self: Any, timeout_seconds: int, callback_endpoint: Any) -> Any:
    clock = vclock.active()
    if clock is None:
        return _original_wait_token(self, timeout_seconds, callback_endpoint)
    if not isinstance(timeout_seconds, int | float):
        # The idle token listener moto starts beside a .sync task: nothing will answer it; wait until torn down.
        return callback_endpoint.wait(timeout=None)
    begin, real_start = clock.elapsed, time.monotonic()
    real_timeout = clock.real_timeout(timeout_seconds) or 0.0
    outcome = callback_endpoint.wait(timeout=real_timeout)
    if outcome is None:
        clock.wait_unheld()  # an approver answering right now answers in time
        outcome = callback_endpoint.get_outcome()
    if outcome is None and time.monotonic() - real_start >= real_timeout:
        clock.advance_to(begin + timeout_seconds)  # nobody answered: the full timeout passed (not an interrupt)
    return outcome


def _virtual_timestamp() -> _dt.datetime:
    clock = vclock.active()
    return clock.now() if clock is not None else _dt.datetime.now(tz=_dt.UTC)


# --- 5. StopExecution during a Map --------------------------------------------------------------------------------


def _set_error(self: Environment, error: Any) -> None:
    """Once stopped, stay stopped: errors raised while Map iterations unwind must not turn ABORTED into FAILED."""
    if isinstance(self.program_state(), ProgramStopped):
        return
    _original_set_error(self, error)


_original_set_error = Environment.set_error


# --- 6. StopExecution's error and cause are kept (note 11) --------------------------------------------------------


def _stop_execution_response(self: StepFunctionResponse) -> ActionResult:
    arn = self._get_param("executionArn")
    backend = self.stepfunction_backend
    backend._validate_execution_arn(arn)
    machine = backend._get_state_machine_for_execution(arn)
    execution = next((x for x in machine.executions if x.execution_arn == arn), None)
    if execution is None:
        return ActionResult(backend.stop_execution(arn))  # let moto raise ExecutionDoesNotExist
    execution.stop(
        stop_date=_dt.datetime.now(tz=_dt.UTC), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return ActionResult({"stopDate": execution.stop_date or _dt.datetime.now(tz=_dt.UTC)})


def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
    _original_reflect(self)
    state = self.execution.exec_worker.env.program_state()
    if isinstance(state, ProgramStopped):
        self.execution.error, self.execution.cause = state.error, state.cause


_original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status


# --- 7. SendTaskFailure keeps its cause (note 11) -----------------------------------------------------------------


def _send_task_failure_response(self: StepFunctionResponse) -> ActionResult:
    backend = self.stepfunction_backend
    backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


# --- 8. GetExecutionHistory pages and honours reverseOrder ---------------------------------------------------------


def _get_execution_history_response(self: StepFunctionResponse) -> ActionResult:
    """moto returns every event, oldest first, whatever was asked: page like AWS (default 100, at most 1000)."""
    events = list(self.stepfunction_backend.get_execution_history(self._get_param("executionArn"))["events"])
    if self._get_param("reverseOrder"):
        events.reverse()
    size = min(int(self._get_param("maxResults") or 100), 1000)
    start = int(self._get_param("nextToken") or 0)
    page: dict[str, Any] = {"events": events[start : start + size]}
    if start + size < len(events):
        page["nextToken"] = str(start + size)
    return ActionResult(page)


# --- 9. one interpreter client per service and region ------------------------------------------------------------

_original_boto_client_for = _boto_client_module.boto_client_for
_clients: dict[tuple[str, str, bool], Any] = {}
_clients_lock = threading.Lock()


def _cached_boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    """moto's `boto_client_for`, memoised. It ignores `state_credentials` (fixed fake keys); whether moto intercepts
    calls decides the endpoint, so it is part of the key."""
    from moto.core.models import botocore_stubber

    key = (region, service, bool(botocore_stubber.enabled))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _original_boto_client_for(region=region, service=service, state_credentials=state_credentials)
                _clients[key] = client
    return client


def _patch_boto_client_importers() -> None:
    """Modules that did `from ...boto_client import boto_client_for` keep their own reference: update those too."""
    import sys

    setattr(_boto_client_module, "boto_client_for", _cached_boto_client_for)  # noqa: B010
    for module in list(sys.modules.values()):
        if module is not None and getattr(module, "boto_client_for", None) is _original_boto_client_for:
            setattr(module, "boto_client_for", _cached_boto_client_for)  # noqa: B010


_original_wait_interval = WaitFunction._wait_interval
_original_wait_token = StateTaskServiceCallback._wait_for_task_token_timeout
_applied = threading.Lock()
_done = False


def apply() -> None:
    """Idempotent; called by the sandbox before it creates its mock."""
    global _done
    with _applied:
        if _done:
            return
        emulators.install()
        from trainctl.sandbox import observer

        observer.install()
        LambdaSimpleBackend.invoke = _invoke_in_process
        setattr(state_task_service_factory, "state_task_service_for", _service_for)  # noqa: B010
        _patch_factory_importers()
        _patch_boto_client_importers()
        WaitFunction._wait_interval = _wait_interval
        retrier_decl.time = _ScaledTime()
        StateTaskServiceCallback._wait_for_task_token_timeout = _wait_for_task_token_timeout
        EventManager._get_current_timestamp = staticmethod(_virtual_timestamp)
        Environment.set_error = _set_error
        StepFunctionResponse.stop_execution = _stop_execution_response
        StepFunctionResponse.send_task_failure = _send_task_failure_response
        StepFunctionResponse.get_execution_history = _get_execution_history_response
        BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status
        _ = state_task_service_callback  # imported for the patch above
        _done = True


def _patch_factory_importers() -> None:
    """Modules that did `from ...factory import state_task_service_for` keep their own reference: update those."""
    import sys

    for module in list(sys.modules.values()):
        if module is not None and getattr(module, "state_task_service_for", None) is _original_factory:
            setattr(module, "state_task_service_for", _service_for)  # noqa: B010
