"""Every change the sandbox makes to moto, in one place. Each has a regression test in tests/sandbox/test_moto_fix*.py.

Tested against moto >=5.2.3,<5.3 (pinned in pyproject.toml). Numbers refer to ../shared/MOTO_NOTES.md.

1. Lambda without Docker echoes the payload (note 1): run the handler in-process (lambda_runtime), as the version
   Invoke's `Qualifier` names (moto reads `qualifier` and runs $LATEST). A state's Lambda invocation runs beside the
   state, as on AWS: a StopExecution ends the state at once while the invocation goes on.
2. `codebuild:startBuild.sync` is unsupported (note 2): a CodeBuild service integration with `.sync`, which waits
   for the emulated build and on stop calls StopBuild as Step Functions does (note 9).
3. Time is virtual and event-driven (vtime): moto's own threads, events, sleeps and timeouts run on the sandbox's
   scheduler while a simulation is active, so a 2-day bake takes a blink and a busy CPU changes nothing.
4. History timestamps, start and stop dates are virtual too, so a simulated run reads like AWS.
5. StopExecution during a Map ends ABORTED, not FAILED (note 9).
6. StopExecution keeps its error and cause (note 11); a stop that lands right after StartExecution finds the
   execution's environment already built (MOTO_NOTES "set_stop" race), and a stop during waitForTaskToken ends the
   execution at once (note 9).
7. SendTaskFailure keeps its cause (note 11).
8. GetExecutionHistory honours reverseOrder, maxResults and nextToken.
9. The interpreter's service clients are made once per service and region (speed only).
11. StartExecution accepts a state machine version or alias ARN and runs that version's definition (moto refuses an
    alias ARN and fails on a version ARN), so the schedule can start the `live` alias and a running execution keeps
    the definition -- and the Lambda versions it names -- it started with.
10. Task tokens behave as in AWS: an answer after the task timed out, after it was answered, or after its execution
    stopped is refused with TaskTimedOut ("The task token has either expired or the task associated with the token
    has already been closed", SendTaskSuccess API reference); an unknown token is InvalidToken.
Also: the 256 KiB payload and 25,000-event history limits, as AWS enforces them (limits.py, installed last by apply()).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

from moto.awslambda.models import LambdaAlias
from moto.awslambda.responses import LambdaResponse
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.botocore_stubber import BotocoreStubber
from moto.core.exceptions import AWSError
from moto.core.responses import ActionResult, EmptyResult
from moto.stepfunctions.exceptions import InvalidToken
from moto.stepfunctions.parser.api import ExecutionStatus, HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.callback.callback import (
    CallbackEndpoint,
    CallbackOutcome,
    CallbackOutcomeFailure,
    CallbackOutcomeSuccess,
    CallbackOutcomeTimedOut,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.utils import boto_client as _boto_client_module
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication, Execution
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
from moto.stepfunctions.parser.models import StepFunctionsParserBackend
from moto.stepfunctions.responses import StepFunctionResponse

from trainctl.sandbox import accounts, emulators, network, vtime
from trainctl.sandbox.lambda_runtime import registry

# --- 1. Lambda in-process, beside its state ------------------------------------------------------------------------

_request = threading.local()


def _invoke_response(self: LambdaResponse) -> Any:
    """moto reads the `qualifier` query parameter; Invoke sends `Qualifier` (Lambda API reference, Invoke), so an
    invocation of a version ran $LATEST. Keep the real one for the backend."""
    _request.qualifier = (self.querystring.get("Qualifier") or [None])[0]
    try:
        return _original_invoke_response(self)
    finally:
        _request.qualifier = None


def _invoke_in_process(
    self: LambdaSimpleBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    qualifier = qualifier or getattr(_request, "qualifier", None)
    parts = function_name.split(":")
    if len(parts) == 8 and function_name.startswith("arn:"):  # a qualified ARN names the version itself
        function_name, qualifier = ":".join(parts[:7]), parts[7]
    fn = self.get_function(function_name, qualifier)
    payload = json.loads(body) if body else {}
    version = qualifier if qualifier and qualifier[0].isdigit() else "$LATEST"
    # The backend is the function's account's: a hook in a target account invokes that account's function.
    result, errored = registry.invoke(fn.function_name, payload, version=version, account=self.account_id)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-executed-version"] = version
    return result.encode()


class _StoppedWhileInvoking(Exception):
    """The execution stopped while its Lambda invocation ran: the state ends now, the invocation goes on."""


def _lambda_integration_beside_the_state(env: Environment, parameters: dict[str, Any], **kwargs: Any) -> None:
    scheduler = vtime.active()
    if scheduler is None:
        _original_lambda_integration(env=env, parameters=parameters, **kwargs)
        return
    world = emulators.active()
    spec = registry.spec(str(parameters.get("FunctionName", "")))
    duration = world.lambda_duration(spec.logical_id) if world is not None and spec is not None else 0.0
    box: dict[str, BaseException] = {}

    def invoke() -> None:
        scheduler.sleep(duration)  # a Lambda that takes time (scenario `lambdas`); in-process compute takes none
        try:
            _original_lambda_integration(env=env, parameters=parameters, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    worker = vtime.spawn(invoke, f"lambda:{parameters.get('FunctionName', '?')}")
    scheduler.wait_any((worker._done, env.program_state_event), None, unless=lambda: not env.is_running())
    if not worker._done.is_set():
        raise _StoppedWhileInvoking()
    if "error" in box:
        raise box["error"]


_original_lambda_integration = lambda_eval_utils.execute_lambda_function_integration
_original_invoke_response = LambdaResponse.invoke


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


@functools.cache
def _codebuild_errors() -> frozenset[str]:
    import botocore.session

    return frozenset(s.name for s in botocore.session.get_session().get_service_model("codebuild").error_shapes)


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
            # An AWS SDK error inside an optimized integration is named <Service>.<ErrorCode>
            # (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html) for the errors the
            # service's model defines; one it does not (ThrottlingException, a Common Error) surfaces as the SDK's
            # base exception, as Lambda's do (`Lambda.AWSLambdaException`, bp-lambda-serviceexception.html).
            code = str(response["Error"]["Code"])
            name = f"CodeBuild.{code}" if code in _codebuild_errors() else "CodeBuild.AWSCodeBuildException"
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
        """moto polls the resolver every 0.5 s (a sleep that moved virtual time when a wake-up came early); the
        emulated build says when it ends, so the resolver waits for that or for the stop, and nothing polls."""
        assert sync_resolver is not None
        result = None
        while env.is_running():
            result = sync_resolver()
            if result:
                return result
        sync_resolver()  # stopped (perhaps before the first wait): Step Functions stops the build
        return result

    def _build_sync_resolver(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> Callable[[], Any] | None:
        started = env.stack.pop()
        build_id = started["Build"]["Id"]
        client = self._client(resource_runtime_part, state_credentials)
        world, scheduler = emulators.active(), vtime.active()
        stopped = False

        def resolve() -> Any:
            nonlocal stopped
            if world is not None and scheduler is not None and env.is_running():
                # Wait exactly until the emulated build ends, or until the execution stops.
                done = world.codebuild.ended(build_id)
                scheduler.wait_any((done, env.program_state_event), None, unless=lambda: not env.is_running())
            if not env.is_running():
                # The execution was stopped while the build ran: Step Functions stops the build (best effort).
                if not stopped:
                    stopped = True
                    with contextlib.suppress(Exception):
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


# --- 12. startExecution.sync:2: wait for the child's end, and stop it when the parent stops ---------------------

_ended: dict[str, vtime.VEvent] = {}
_ended_lock = threading.Lock()


def _ended_event(execution_arn: str) -> vtime.VEvent:
    """Set when the execution's worker has finished (any status). Made by whoever asks first: the parent may ask
    before the child's worker ends, or after."""
    with _ended_lock:
        event = _ended.get(execution_arn)
        if event is None:
            event = _ended[execution_arn] = vtime.VEvent()
        return event


class StateTaskServiceSfnEvents(StateTaskServiceSfn):  # type: ignore[misc]
    """moto polls DescribeExecution every 0.5 s (in virtual time: thousands of wake-ups over a chunk's hours) and, when
    the parent stops, leaves the child running. Step Functions stops a `.sync`/`.sync:2` child when the task is
    stopped ("Step Functions will stop the child execution" -- connect-stepfunctions.html, and why the IAM policy for
    the pattern has states:StopExecution): so does this."""

    def _eval_service_task(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> None:
        # moto hands the Step Functions-cased request (StateMachineArn) to botocore, which wants stateMachineArn
        # (its request normalisation is a no-op); the answer goes back in Step Functions casing (ExecutionArn).
        client = _cached_boto_client_for(
            service="stepfunctions", region=resource_runtime_part.region, state_credentials=state_credentials
        )
        request = {k[:1].lower() + k[1:]: v for k, v in normalised_parameters.items()}
        response = getattr(client, self._get_boto_service_action())(**request)
        response.pop("ResponseMetadata", None)
        env.stack.append(_sfn_top_cased(response))

    def _eval_sync(
        self,
        env: Any,
        sync_resolver: Callable[[], Any] | None,
        timeout_seconds: int | None,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        if vtime.active() is None:
            return super()._eval_sync(env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint)
        return StateTaskServiceCodeBuild._eval_sync(
            self, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint
        )

    def _build_sync2_resolver(
        self, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any], state_credentials: Any
    ) -> Callable[[], Any] | None:
        scheduler = vtime.active()
        child = str(env.stack[-1]["ExecutionArn"])
        moto_resolver: Callable[[], Any] | None = super()._build_sync2_resolver(
            env, resource_runtime_part, normalised_parameters, state_credentials
        )
        if scheduler is None or moto_resolver is None:
            return moto_resolver
        client = _cached_boto_client_for(
            service="stepfunctions", region=resource_runtime_part.region, state_credentials=state_credentials
        )
        parent = str(getattr(env.event_manager, "sandbox_execution_arn", "") or "")
        stopped = False

        def resolve() -> Any:
            nonlocal stopped
            if env.is_running():
                scheduler.wait_any(
                    (_ended_event(child), env.program_state_event), None, unless=lambda: not env.is_running()
                )
            if not env.is_running():
                if not stopped:
                    stopped = True
                    with contextlib.suppress(Exception):  # it may have ended meanwhile: nothing to stop
                        client.stop_execution(
                            executionArn=child, cause=f"the execution that started it stopped: {parent}"[:32768]
                        )
                return None
            described = moto_resolver()
            return None if described is None else _sfn_top_cased(described)

        return resolve


def _sfn_top_cased(response: dict[str, Any]) -> dict[str, Any]:
    """DescribeExecution as the `.sync:2` task result: PascalCase keys (`Output`, `Status`), dates as epoch
    milliseconds; `Input`/`Output` stay the JSON objects moto parsed them into, their own keys untouched
    (connect-stepfunctions.html: "`.sync:2` ... returns the output as JSON")."""
    return {
        key[:1].upper() + key[1:]: int(value.timestamp() * 1000) if isinstance(value, _dt.datetime) else value
        for key, value in response.items()
    }


_original_factory = state_task_service_factory.state_task_service_for


def _service_for(service_name: str) -> Any:
    if service_name == "codebuild":
        return StateTaskServiceCodeBuild()
    if service_name == "states":
        return StateTaskServiceSfnEvents()
    return _original_factory(service_name)


# --- 3. virtual time: which of moto's (and the hooks') globals become vtime's ---------------------------------------


def _swap_targets() -> dict[Any, dict[str, Any]]:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.program import program
    from moto.stepfunctions.parser.asl.component.state.exec import execute_state
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        inline_iteration_component,
        job,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import map_run_record
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branch_worker, branches_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_callback
    from moto.stepfunctions.parser.asl.eval import environment
    from moto.stepfunctions.parser.asl.eval.callback import callback
    from moto.stepfunctions.parser.backend import execution_worker

    from release_train import hooks
    from release_train.adapters import check_runners, deployments, sources

    threads, time = vtime.threading_shim, vtime.time_shim
    return {
        retrier_decl: {"time": time},
        program: {"threading": threads},
        execute_state: {"threading": threads, "Thread": vtime.VThread},
        inline_iteration_component: {"threading": threads},
        job: {"threading": threads},
        map_run_record: {"threading": threads},
        branch_worker: {"threading": threads},
        branches_decl: {"threading": threads},
        state_task_service_callback: {"threading": threads, "time": time},
        environment: {"threading": threads},
        callback: {"Event": vtime.VEvent},
        execution_worker: {"Thread": vtime.VThread},
        hooks: {"threading": threads, "time": time},  # the hooks' check time budget and per-check timeout
        deployments: {"time": time},  # the clean-up waits for stopped deployments to end
        check_runners: {"time": time},  # a check's measured duration (max_duration_ms) is virtual: compute takes none
        sources: {"time": time},  # GitHub's Retry-After / x-ratelimit-reset waits pass on the virtual clock
    }


def _wait_interval(self: WaitFunction, env: Environment, wait_seconds: int) -> None:
    if vtime.active() is None:
        _original_wait_interval(self, env, wait_seconds)
        return
    if wait_seconds > 0:
        env.program_state_event.wait(wait_seconds, unless=lambda: not env.is_running())


def _eval_wait_for_task_token(
    self: StateTaskServiceCallback,
    env: Environment,
    timeout_seconds: int,
    callback_endpoint: CallbackEndpoint,
    heartbeat_endpoint: Any,
) -> CallbackOutcome:
    """moto waits for the token's answer (or the timeout) even after a StopExecution: wait for the stop too."""
    scheduler = vtime.active()
    if scheduler is None or heartbeat_endpoint is not None:
        return _original_eval_wait_for_task_token(self, env, timeout_seconds, callback_endpoint, heartbeat_endpoint)
    timeout = timeout_seconds if isinstance(timeout_seconds, int | float) else None
    scheduler.wait_any(
        (callback_endpoint._notify_event, env.program_state_event),
        timeout,
        unless=lambda: not env.is_running() or callback_endpoint.get_outcome() is not None,
    )
    outcome = callback_endpoint.get_outcome()
    return outcome if outcome is not None else CallbackOutcomeTimedOut(callback_id=callback_endpoint.callback_id)


# --- 4. virtual dates ---------------------------------------------------------------------------------------------


def _virtual_timestamp() -> _dt.datetime:
    scheduler = vtime.active()
    return scheduler.now() if scheduler is not None else _dt.datetime.now(tz=_dt.UTC)


def _execution_start(self: Execution) -> None:
    self.start_date = _virtual_timestamp()
    _original_execution_start(self)


_original_execution_start = Execution.start


# --- 5. StopExecution during a Map --------------------------------------------------------------------------------


def _set_error(self: Environment, error: Any) -> None:
    """Once stopped, stay stopped: errors raised while Map iterations unwind must not turn ABORTED into FAILED."""
    if isinstance(self.program_state(), ProgramStopped):
        return
    _original_set_error(self, error)


_original_set_error = Environment.set_error


# --- 6. StopExecution: error and cause kept; never before the environment exists ---------------------------------


def _stop_execution_response(self: StepFunctionResponse) -> ActionResult:
    arn = self._get_param("executionArn")
    backend = self.stepfunction_backend
    backend._validate_execution_arn(arn)
    machine = backend._get_state_machine_for_execution(arn)
    execution = next((x for x in machine.executions if x.execution_arn == arn), None)
    if execution is None:
        return ActionResult(backend.stop_execution(arn))  # let moto raise ExecutionDoesNotExist
    stop_date = _virtual_timestamp()
    execution.stop(stop_date=stop_date, error=self._get_param("error"), cause=self._get_param("cause"))
    return ActionResult({"stopDate": execution.stop_date or stop_date})


def _reflect_execution_status(self: BaseExecutionWorkerCommunication) -> None:
    _original_reflect(self)
    self.execution.stop_date = _virtual_timestamp()
    state = self.execution.exec_worker.env.program_state()
    if isinstance(state, ProgramStopped):
        self.execution.error, self.execution.cause = state.error, state.cause


_original_reflect = BaseExecutionWorkerCommunication._reflect_execution_status


def _worker_start(self: ExecutionWorker) -> None:
    """Build the environment in the caller's thread, so a StopExecution right after the start finds it."""
    program = self._get_evaluation_entrypoint()
    self.env = self._get_evaluation_environment()
    self.env.event_manager.sandbox_execution_arn = self._evaluation_details.execution_details.arn  # for observers

    def run() -> None:
        from moto.stepfunctions.parser.api import ExecutionStartedEventDetails, HistoryEventExecutionDataDetails

        assert self.env is not None
        details = self._evaluation_details
        self.env.event_manager.add_event(
            context=self.env.event_history_context,
            event_type=HistoryEventType.ExecutionStarted,
            event_details=EventDetails(
                executionStartedEventDetails=ExecutionStartedEventDetails(
                    input=to_json_str(details.execution_details.inpt),
                    inputDetails=HistoryEventExecutionDataDetails(truncated=False),
                    roleArn=details.aws_execution_details.role_arn,
                )
            ),
            update_source_event_id=False,
        )
        program.eval(self.env)
        self._execution_communication.terminated()
        if vtime.active() is not None:
            _ended_event(self._evaluation_details.execution_details.arn).set()  # a parent's .sync:2 task waits on it

    thread_class = vtime.VThread if vtime.active() is not None else threading.Thread
    thread_class(target=run, name=f"execution:{details_name(self)}", daemon=True).start()


def details_name(worker: ExecutionWorker) -> str:
    return str(worker._evaluation_details.execution_details.name)


# --- 7. SendTaskFailure keeps its cause; 10. task tokens as in AWS ---------------------------------------------------

_token_lock = threading.Lock()


def _interrupt_all(self: CallbackEndpoint) -> None:
    """Called when the task that owns the token ends (answered, timed out, or its execution stopped)."""
    self.sandbox_closed = True
    _original_interrupt_all(self)


_original_interrupt_all = CallbackEndpoint.interrupt_all


def _find_token(backend: StepFunctionsParserBackend, token: str) -> tuple[Execution, CallbackEndpoint]:
    for execution in backend._get_executions():
        worker = execution.exec_worker
        env = worker.env if worker is not None else None
        endpoint = env.callback_pool_manager.get(token) if env is not None else None
        if endpoint is not None:
            return execution, endpoint
    raise InvalidToken("'Invalid token'")


def _task_timed_out() -> AWSError:
    return AWSError("Task Timed Out: 'Provided task does not exist anymore'", exception_type="TaskTimedOut")


def _answer(backend: StepFunctionsParserBackend, token: str, outcome: CallbackOutcome | None) -> None:
    execution, endpoint = _find_token(backend, token)
    with _token_lock:
        closed = (
            execution.exec_status != ExecutionStatus.RUNNING
            or getattr(endpoint, "sandbox_closed", False)
            or endpoint.get_outcome() is not None
        )
        if closed:
            raise _task_timed_out()
        if outcome is None:
            if not endpoint.notify_heartbeat():
                raise _task_timed_out()
            return
        endpoint.notify(outcome)


def _send_task_success(self: StepFunctionsParserBackend, task_token: str, outcome: str) -> None:
    _answer(self, task_token, CallbackOutcomeSuccess(callback_id=task_token, output=outcome))


def _send_task_failure(
    self: StepFunctionsParserBackend, task_token: str, error: str | None = None, cause: str | None = None
) -> None:
    _answer(self, task_token, CallbackOutcomeFailure(callback_id=task_token, error=error, cause=cause))


def _send_task_heartbeat(self: StepFunctionsParserBackend, task_token: str) -> None:
    _answer(self, task_token, None)


def _send_task_failure_response(self: StepFunctionResponse) -> ActionResult:
    backend = self.stepfunction_backend
    backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


# --- 11. executions of a version or an alias ------------------------------------------------------------------------


def _start_execution(
    self: StepFunctionsParserBackend,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    if not name:  # optional in the API: "If you don't provide a name, Step Functions generates a UUID"
        name = str(uuid.uuid4())
    parts = state_machine_arn.split(":")
    if len(parts) != 8:  # arn:aws:states:region:account:stateMachine:name[:version or alias]
        return _original_start_execution(self, state_machine_arn, name, execution_input, trace_header)
    base = self.describe_state_machine(":".join(parts[:7]))
    qualifier = parts[7]
    if qualifier.isdigit():
        version_arn = state_machine_arn
    else:
        alias = self.describe_state_machine_alias(state_machine_arn)
        # An alias routes to one version, or splits between two by weight: the heavier one runs (deterministic).
        route = max(alias.routing_configuration, key=lambda r: int(r["weight"]))
        version_arn = str(route["stateMachineVersionArn"])
    version = base.versions.get(int(version_arn.rsplit(":", 1)[1]))
    if version is None:
        from moto.stepfunctions.exceptions import StateMachineDoesNotExist

        raise StateMachineDoesNotExist(f"State Machine Does Not Exist: '{version_arn}'")
    current = base.definition
    base.definition = version.definition  # the execution's snapshot (moto deep-copies the machine) is the version's
    try:
        execution = _original_start_execution(self, base.arn, name, execution_input, trace_header)
    finally:
        base.definition = current
    execution.sandbox_version_arn = version_arn
    return execution


_original_start_execution = StepFunctionsParserBackend.start_execution


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


def _patch_importers(original: Any, replacement: Any, name: str) -> None:
    """Modules that did `from ... import name` keep their own reference: update those too."""
    import sys

    for module in list(sys.modules.values()):
        if module is not None and getattr(module, name, None) is original:
            setattr(module, name, replacement)


# --- 13. JSONPath expressions parsed once --------------------------------------------------------------------------
# moto parses every JSONPath on every evaluation, and jsonpath_ng builds a new PLY parser for each parse: about half
# of a train's wall time went there. A parsed expression is read-only in `find`/`update`, so one may serve every
# thread; parsing itself (PLY's tables) runs under a lock, once per distinct path.

_parse_lock = threading.Lock()


def _memoised(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def parsed(path: str) -> Any:
        expression = cache.get(path)
        if expression is None:
            with _parse_lock:
                expression = cache.get(path)
                if expression is None:
                    expression = cache[path] = parse(path)
        return expression

    return parsed


def _install_jsonpath_cache() -> None:
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    json_path.parse = _memoised(json_path.parse)
    result_path.parse = _memoised(result_path.parse)


# --- 14. one AWS request at a time, as AWS makes each one atomic ------------------------------------------------
# moto's backends are not thread-safe: two concurrent PutItem with `attribute_not_exists` both succeeded in 5 of 200
# tries (4 threads), where DynamoDB lets exactly one win. The sandbox runs hooks, builds and Lambdas on many threads,
# so an idempotency record or the train lock could be taken twice. Every request moto answers is serialised; the
# lock is given up while its holder waits in virtual time (an in-process Lambda inside Invoke may sleep).

dispatch_lock = vtime.HeldLock()


def _serialised_dispatch(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
    if vtime.active() is None:
        return _original_dispatch(self, event_name, request, **kwargs)
    with dispatch_lock:
        return _original_dispatch(self, event_name, request, **kwargs)


# --- 15. CloudFormation's AWS::KMS::Key keeps its KeySpec and KeyUsage -------------------------------------------
# moto creates every key from a template as ENCRYPT_DECRYPT / SYMMETRIC_DEFAULT, so the break-glass HMAC key
# (KeySpec HMAC_256, KeyUsage GENERATE_VERIFY_MAC) refused GenerateMac with InvalidKeyUsageException.


def _kms_key_from_cloudformation(
    cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
) -> Any:
    from moto.kms.models import kms_backends

    properties = cloudformation_json["Properties"]
    policy = properties["KeyPolicy"]
    key = kms_backends[account_id][region_name].create_key(
        policy=policy if isinstance(policy, str) else json.dumps(policy),
        key_usage=properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
        key_spec=properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
        description=properties.get("Description"),
        tags=properties.get("Tags", []),
    )
    key.key_rotation_status = properties.get("EnableKeyRotation", False)
    key.enabled = properties.get("Enabled", True)
    return key


# --- 16. UpdateAlias honours RevisionId -------------------------------------------------------------------------
# moto keeps one RevisionId per alias for ever and ignores UpdateAlias's ("The RevisionId parameter is not yet
# implemented"). As the UpdateAlias API reference says AWS does: each update gives the alias a new RevisionId, and an
# UpdateAlias naming an older one fails with PreconditionFailedException (HTTP 412). `trainctl rollback` relies on it.


def _alias_update(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_alias_update(self, *args, **kwargs)
    self.revision_id = str(uuid.uuid4())


def _update_alias_response(self: Any) -> Any:
    from urllib.parse import unquote

    from moto.awslambda.exceptions import PreconditionFailedException

    wanted = json.loads(self.body).get("RevisionId")
    function, name = unquote(self.path.rsplit("/")[-3]), unquote(self.path.rsplit("/", 2)[-1])
    if wanted and self.backend.get_alias(name, function).revision_id != wanted:
        raise PreconditionFailedException(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
        )
    return _original_update_alias_response(self)


_original_alias_update = LambdaAlias.update
_original_update_alias_response = LambdaResponse.update_alias
_original_wait_interval = WaitFunction._wait_interval
_original_dispatch = BotocoreStubber.__call__
_original_eval_wait_for_task_token = StateTaskServiceCallback._eval_wait_for_task_token
_applied = threading.Lock()
_done = False


def apply() -> None:
    """Idempotent; the patches that do not depend on a simulation (each consults vtime.active() where it must)."""
    global _done
    with _applied:
        if _done:
            return
        network.install()
        emulators.install()
        accounts.install()
        _install_jsonpath_cache()
        BotocoreStubber.__call__ = _serialised_dispatch
        vtime.held_locks.append(dispatch_lock)
        from trainctl.sandbox import observer

        observer.install()
        LambdaSimpleBackend.invoke = _invoke_in_process
        LambdaResponse.invoke = _invoke_response
        lambda_eval_utils.execute_lambda_function_integration = _lambda_integration_beside_the_state
        setattr(state_task_service_factory, "state_task_service_for", _service_for)  # noqa: B010
        _patch_importers(_original_factory, _service_for, "state_task_service_for")
        setattr(_boto_client_module, "boto_client_for", _cached_boto_client_for)  # noqa: B010
        _patch_importers(_original_boto_client_for, _cached_boto_client_for, "boto_client_for")
        WaitFunction._wait_interval = _wait_interval
        StateTaskServiceCallback._eval_wait_for_task_token = _eval_wait_for_task_token
        EventManager._get_current_timestamp = staticmethod(_virtual_timestamp)
        Execution.start = _execution_start
        ExecutionWorker.start = _worker_start
        Environment.set_error = _set_error
        StepFunctionResponse.stop_execution = _stop_execution_response
        StepFunctionResponse.send_task_failure = _send_task_failure_response
        StepFunctionResponse.get_execution_history = _get_execution_history_response
        BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_execution_status
        CallbackEndpoint.interrupt_all = _interrupt_all
        StepFunctionsParserBackend.send_task_success = _send_task_success
        StepFunctionsParserBackend.send_task_failure = _send_task_failure
        StepFunctionsParserBackend.send_task_heartbeat = _send_task_heartbeat
        StepFunctionsParserBackend.start_execution = _start_execution
        from moto.kms.models import Key as KmsKey

        KmsKey.create_from_cloudformation_json = classmethod(_kms_key_from_cloudformation)
        LambdaAlias.update = _alias_update
        LambdaResponse.update_alias = _update_alias_response
        from trainctl.sandbox import limits

        limits.install()  # last: it wraps the fixes above (EventManager.add_event, Environment.set_error)
        _done = True


@contextlib.contextmanager
def virtual_time(scheduler: vtime.Scheduler) -> Iterator[None]:
    """While a simulation runs: moto's threads and waits are vtime's, the network is sealed, and the clock is the
    scheduler's. On the way out, every participant must have ended (a thread left behind is a sandbox defect)."""
    from release_train.adapters.clock import Clock, system_now

    apply()
    vtime.activate(scheduler)
    Clock.source = staticmethod(scheduler.now)
    try:
        with network.sealed(), vtime.swapped(_swap_targets()):
            yield
    finally:
        scheduler.close()
        with _ended_lock:
            _ended.clear()
        vtime.activate(None)
        Clock.source = staticmethod(system_now)
