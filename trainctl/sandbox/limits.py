"""The two Step Functions hard limits AWS enforces and moto 5.2.x does not (or not as AWS does), and what the report
says about them. Installed by moto_fixes.apply(); regression tests in tests/sandbox/test_aws_limits.py.

1. Payload: "Maximum input or output size for a task, state, or execution: 262,144 bytes of data as a UTF-8 encoded
   string. This quota affects tasks (activity, Lambda function, or integrated service), state or execution output,
   and input data when scheduling a task, entering a state, or starting an execution" (Step Functions service quotas).
   Over it the state fails with `States.DataLimitExceeded`: a connector's output, a state's output, a state's input
   after Parameters (error handling page, States.DataLimitExceeded), and here also the input a state enters with.
   moto checks results and outputs, but counts `bytes < 262,144` (so exactly 256 KiB fails), measures `json.dumps`
   with spaces and ASCII escapes, never checks an input, and lets `States.ALL` catch the error.
   The error handling page: "`States.ALL` ... can't catch the `States.DataLimitExceeded` terminal error" and
   "DataLimitExceeded is a terminal error that can't be caught by the States.ALL error type". Neither `States.ALL` nor
   `States.TaskFailed` match it here, in a Retry or a Catch; a retrier or catcher that names
   `States.DataLimitExceeded` itself does (the ASL grammar accepts the name, and the docs rule out only the wildcard).
2. History: "Maximum execution history size: 25,000 events in a single state machine execution history" (service
   quotas; hard). Best practices, "Avoid reaching the history quota": when an execution has 24,999 events, "if the
   event number 25,000 is ExecutionSucceeded, the execution finishes successfully"; if not, "the ExecutionFailed
   event is logged and the state machine execution fails because of reaching the history limit". The docs do not
   name the error; executions that hit it on AWS show error `States.Runtime`, cause "The execution reached the
   maximum number of history events (25000)." as event 25,000 (loads/ardere#86, floci-io/floci#2734). Express
   workflows have no history and no such cap.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from moto.stepfunctions.parser.api import (
    ExecutionFailedEventDetails,
    HistoryEventType,
    LambdaFunctionFailedEventDetails,
    TaskFailedEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name import custom_error_name
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_activitiy import StateTaskActivity
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

PAYLOAD_LIMIT_BYTES: Final = 256 * 1024  # 262,144: at most this many bytes passes
HISTORY_LIMIT = 25_000  # events; a module attribute so a test may lower it (test_aws_limits.py also tests this one)
DATA_LIMIT_EXCEEDED: Final = StatesErrorNameType.StatesStatesDataLimitExceeded.to_name()  # "States.DataLimitExceeded"
HISTORY_LIMIT_ERROR: Final = StatesErrorNameType.StatesRuntime.to_name()


def history_limit_cause() -> str:
    return f"The execution reached the maximum number of history events ({HISTORY_LIMIT})."


def _json_default(value: Any) -> Any:
    # As moto's own encoder (asl/utils/encoding.py), so a measured payload is the one the history records.
    return value.isoformat() if isinstance(value, _dt.date) else str(value)


def payload_bytes(value: Any) -> int:
    """The size AWS counts: the value as a UTF-8 encoded JSON string (compact, characters unescaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return len(text.encode("utf-8", "surrogatepass"))


# --- 1. payload -------------------------------------------------------------------------------------------------


def _cause(state: str, what: str, size: int) -> str:
    return (
        f"The state/task '{state}' {what} with a size exceeding the maximum number of bytes service limit: "
        f"{size:,} bytes of UTF-8 encoded JSON, the limit is {PAYLOAD_LIMIT_BYTES:,} (256 KiB)."
    )


def _data_limit_exceeded(state: CommonStateField, env: Environment, cause: str) -> FailureEventException:
    error = StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)
    details: EventDetails
    event_type = HistoryEventType.TaskFailed
    if isinstance(state, StateTaskLambda):
        event_type = HistoryEventType.LambdaFunctionFailed
        details = EventDetails(
            lambdaFunctionFailedEventDetails=LambdaFunctionFailedEventDetails(error=DATA_LIMIT_EXCEEDED, cause=cause)
        )
    elif isinstance(state, StateTaskService):
        details = EventDetails(
            taskFailedEventDetails=TaskFailedEventDetails(
                error=DATA_LIMIT_EXCEEDED,
                cause=cause,
                resource=state._get_sfn_resource(),
                resourceType=state._get_sfn_resource_type(),
            )
        )
    else:
        details = EventDetails(taskFailedEventDetails=TaskFailedEventDetails(error=DATA_LIMIT_EXCEEDED, cause=cause))
    return FailureEventException(FailureEvent(env=env, error_name=error, event_type=event_type, event_details=details))


def _check(state: CommonStateField, env: Environment, value: Any, what: str) -> None:
    size = payload_bytes(value)
    if size > PAYLOAD_LIMIT_BYTES:
        raise _data_limit_exceeded(state, env, _cause(state.name, what, size))


def _verify_size_quota(self: CommonStateField, env: Environment, value: Any) -> None:
    """moto's one hook for a task's result (before TaskSucceeded / LambdaFunctionSucceeded) and for a state's output
    (before its StateExited): the same name on the state and on its task classes."""
    _check(self, env, value, "returned a result")


def _with_entry_check(original: Callable[[CommonStateField, Environment], None]) -> Any:
    def _eval_body(self: CommonStateField, env: Environment) -> None:
        # The input a state enters with: a Map item (after ItemSelector), a catcher's output, the execution's input.
        _check(self, env, env.states.get_input(), "received an input")
        original(self, env)

    return _eval_body


def _with_parameters_check(original: Callable[[StateTask, Environment], dict[str, Any]]) -> Any:
    def _eval_parameters(self: StateTask, env: Environment) -> dict[str, Any]:
        parameters = original(self, env)
        # "after Parameters processing, the input of a state is larger than the payload size quota"
        _check(self, env, parameters, "has an input after Parameters processing")
        return parameters

    return _eval_parameters


def _with_terminal_data_limit(original: Callable[[ErrorEqualsDecl, Environment], None]) -> Any:
    def _eval_body(self: ErrorEqualsDecl, env: Environment) -> None:
        # moto matches States.ALL against everything; a data limit error matches only a retrier/catcher naming it.
        if getattr(env.stack[-1], "error_name", None) != DATA_LIMIT_EXCEEDED:
            original(self, env)
            return
        env.stack.pop()
        env.stack.append(any(name.error_name == DATA_LIMIT_EXCEEDED for name in self.error_names))

    return _eval_body


def _allow_data_limit_name(original: Callable[..., None]) -> Any:
    def __init__(self: Any, error_name: str | None) -> None:
        # A Map iteration or Parallel branch re-raises its error under a custom name, and moto refuses `States.`
        # names there (MOTO_NOTES note 8): let this one through, so the Map/Parallel fails with it as on AWS.
        if error_name == DATA_LIMIT_EXCEEDED:
            custom_error_name.ErrorName.__init__(self, error_name=error_name)
            return
        original(self, error_name)

    return __init__


# --- 2. history -------------------------------------------------------------------------------------------------


def _with_root_link(original: Callable[[ExecutionWorker], Environment]) -> Any:
    def _get_evaluation_environment(self: ExecutionWorker) -> Environment:
        env = original(self)
        env.event_manager.sandbox_root_env = env  # Map/Parallel frames share the manager, not the program state
        return env

    return _get_evaluation_environment


def _with_history_cap(original: Callable[..., int]) -> Any:
    def add_event(
        self: EventManager, context: Any, event_type: Any, event_details: Any = None, *a: Any, **k: Any
    ) -> int:
        lock: threading.RLock | None = self.__dict__.get("sandbox_cap_lock")
        if lock is None:
            lock = self.__dict__.setdefault("sandbox_cap_lock", threading.RLock())  # atomic: one lock per history
        with lock:  # two Map iterations must not both take the last slot
            capped: int | None = getattr(self, "sandbox_capped_at", None)
            if capped is not None:
                return capped  # the execution already failed: nothing after event 25,000 is recorded
            env: Environment | None = getattr(self, "sandbox_root_env", None)
            standard = env is None or env.is_standard_workflow()
            count = len(self._history_event_list)
            if not standard or count < HISTORY_LIMIT - 1 or event_type == HistoryEventType.ExecutionSucceeded:
                return original(self, context, event_type, event_details, *a, **k)
            # Event 25,000 is not ExecutionSucceeded: it becomes the ExecutionFailed that ends the execution.
            failure = ExecutionFailedEventDetails(error=HISTORY_LIMIT_ERROR, cause=history_limit_cause())
            self.sandbox_capped_details = failure
            event_id = original(
                self, context, HistoryEventType.ExecutionFailed, EventDetails(executionFailedEventDetails=failure)
            )
            self.sandbox_capped_at = event_id
        if env is not None:
            env.set_error(failure)  # the interpreter's loops stop; the program's own ExecutionFailed is dropped above
        return event_id

    return add_event


def _with_sticky_history_failure(original: Callable[[Environment, Any], None]) -> Any:
    def set_error(self: Environment, error: Any) -> None:
        # States unwinding after the cap (a Map whose iterations stopped) report their own error: the cap's stands.
        capped = getattr(self.event_manager, "sandbox_capped_details", None)
        original(self, capped if capped is not None else error)

    return set_error


# --- install ------------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Idempotent. Wraps whatever is in place (moto's or an earlier sandbox fix), so call it after the other fixes."""
    global _installed
    with _lock:
        if _installed:
            return
        for klass in (CommonStateField, StateTaskService, StateTaskLambda):
            klass._verify_size_quota = _verify_size_quota
        CommonStateField._eval_body = _with_entry_check(CommonStateField._eval_body)
        for task in (StateTask, StateTaskLambda, StateTaskActivity):  # the classes that define _eval_parameters
            task._eval_parameters = _with_parameters_check(task.__dict__["_eval_parameters"])
        ErrorEqualsDecl._eval_body = _with_terminal_data_limit(ErrorEqualsDecl._eval_body)
        custom_error_name.CustomErrorName.__init__ = _allow_data_limit_name(custom_error_name.CustomErrorName.__init__)
        ExecutionWorker._get_evaluation_environment = _with_root_link(ExecutionWorker._get_evaluation_environment)
        EventManager.add_event = _with_history_cap(EventManager.add_event)
        Environment.set_error = _with_sticky_history_failure(Environment.set_error)
        _installed = True


# --- the report ---------------------------------------------------------------------------------------------------

_DATA_FIELDS: Final = ("input", "output", "parameters")


def _details(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, Mapping)), None)


def _text_bytes(text: str) -> int:
    try:
        return payload_bytes(json.loads(text))  # the history's JSON is escaped and spaced unevenly: measure as AWS
    except ValueError:
        return len(text.encode("utf-8", "surrogatepass"))


def largest_payload(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The largest state input, state output, task parameters or task result in one execution's history, and the state
    it belongs to (a task's events lead back to their StateEntered through previousEventId). Execution input and output
    are the first state's input and the last state's output, so they are not counted twice."""
    by_id = {e["id"]: e for e in events}

    def state_of(event: Mapping[str, Any]) -> str | None:
        seen = 0
        while event is not None and seen < len(by_id):
            if str(getattr(event["type"], "value", event["type"])).endswith("StateEntered"):
                return str((_details(event) or {}).get("name"))
            event = by_id.get(event.get("previousEventId"))  # type: ignore[assignment]
            seen += 1
        return None

    best: dict[str, Any] = {"bytes": 0, "state": None}
    for event in events:
        details = _details(event)
        if details is None or str(getattr(event["type"], "value", event["type"])).startswith("Execution"):
            continue
        for field in _DATA_FIELDS:
            text = details.get(field)
            if isinstance(text, str) and (size := _text_bytes(text)) > best["bytes"]:
                best = {"bytes": size, "state": details.get("name") or state_of(event)}
    return best
