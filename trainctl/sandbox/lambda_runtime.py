"""Run Lambda handlers in-process, each under the environment its template entry gives it.

moto without Docker echoes the payload back; the sandbox needs the real code. Each function's module is imported
once (under a global lock, with its own environment in `os.environ` only while importing, because handlers read the
environment at import time) and cached, like a warm Lambda container.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from trainctl.sandbox import accounts
from trainctl.sandbox.accounts import ACCOUNT


@dataclass
class FunctionSpec:
    name: str
    logical_id: str
    code_dir: Path
    handler: str  # "module.function"
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    arn: str
    account: str = ACCOUNT  # a target account's function (its hooks) runs as that account (accounts.running_in)

    @property
    def key(self) -> str:
        """Unique in the sandbox: the same function name may exist in several accounts."""
        return self.logical_id if self.account == ACCOUNT else f"{self.logical_id}@{self.account}"


@dataclass
class _Context:
    """The LambdaContext fields handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "sandbox"

    def get_remaining_time_in_millis(self) -> int:
        # In-process calls are fast; report the configured budget so time-budgeted code behaves as on AWS.
        return self.timeout_s * 1000


class LogSink(io.TextIOBase):
    """Where handler logs go. Powertools binds its stream once per process, so the sink stays and its target moves
    from run to run (a file in `trainctl simulate`, nothing otherwise)."""

    def __init__(self) -> None:
        self.target: TextIO | None = None

    def write(self, text: str) -> int:
        target = self.target
        if target is not None and not target.closed:
            target.write(text)
        return len(text)

    def writable(self) -> bool:
        return True


class Registry:
    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], FunctionSpec] = {}  # (account, name or ARN) -> spec
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.RLock()
        self.log = LogSink()
        self.invocations: dict[str, int] = {}
        self.by_version: dict[str, dict[str, int]] = {}  # logical id -> version -> invocations
        self._broken: dict[tuple[str, str, str], str] = {}  # (account, function, version) -> why every call fails

    def register(self, spec: FunctionSpec) -> None:
        self._specs[(spec.account, spec.name)] = spec
        self._specs[(spec.account, spec.arn)] = spec

    def reset(self) -> None:
        """A new simulation is a cold start for every function: its modules are imported again, and what the shared
        layer cached per container (`release_train.wiring`'s clients for the stage accounts, signed with keys of the
        previous simulation's moto) is forgotten."""
        for name, module in list(sys.modules.items()):
            if name == "release_train" or name.startswith("release_train."):
                for value in list(vars(module).values()):
                    if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == name:
                        value.cache_clear()
        self._specs.clear()
        self._modules.clear()
        self.invocations.clear()
        self.by_version.clear()
        self._broken.clear()

    def break_version(self, name: str, version: str, why: str, account: str = ACCOUNT) -> None:
        """From now on, every invocation of this function version fails (a scenario's bad release)."""
        self._broken[(account, name, version)] = why

    def spec(self, name_or_arn: str, account: str | None = None) -> FunctionSpec | None:
        """A name is looked up in `account` (default: the account of the function running on this thread, as a bare
        name is resolved in the caller's account); an ARN names its own account."""
        if ":function:" in name_or_arn:
            account = name_or_arn.split(":")[4] or account
            name = name_or_arn.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        else:
            name = name_or_arn
        return self._specs.get((account or accounts.current() or ACCOUNT, name))

    def _module(self, spec: FunctionSpec) -> ModuleType:
        with self._lock:
            if spec.key in self._modules:
                return self._modules[spec.key]
            module_name, _ = spec.handler.rsplit(".", 1)
            path = spec.code_dir / f"{module_name.replace('.', '/')}.py"
            unique = f"sandbox_fn_{spec.key.replace('@', '_')}"
            saved = {k: os.environ.get(k) for k in [*spec.environment, "AWS_LAMBDA_FUNCTION_NAME"]}
            os.environ.update(spec.environment)
            os.environ["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
            try:
                loader_spec = importlib.util.spec_from_file_location(unique, path)
                if loader_spec is None or loader_spec.loader is None:
                    raise ImportError(f"cannot load handler module {path}")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[unique] = module
                # Powertools binds its log stream at Logger() time: import under the sandbox's log sink.
                with contextlib.redirect_stdout(self.log):
                    loader_spec.loader.exec_module(module)
            finally:
                # Put back only what this import set: the environment is never empty, not even for a moment,
                # for the other threads that read it (boto3 reads region and credentials from it).
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            self._modules[spec.key] = module
            return module

    def preload(self) -> None:
        """Import every registered handler now, while nothing else runs: a handler reads its environment at import,
        and the environment is the process's, shared with every thread."""
        for spec in {id(s): s for s in self._specs.values()}.values():
            self._module(spec)

    def invoke(
        self, name_or_arn: str, event: Any, version: str = "$LATEST", account: str | None = None
    ) -> tuple[str, bool]:
        """(payload JSON, errored). An exception becomes Lambda's error payload, errorType = exception class name."""
        spec = self.spec(name_or_arn, account)
        if spec is None:
            return json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": name_or_arn}), True
        with self._lock:
            self.invocations[spec.key] = self.invocations.get(spec.key, 0) + 1
            versions = self.by_version.setdefault(spec.key, {})
            versions[version] = versions.get(version, 0) + 1
        broken = self._broken.get((spec.account, spec.name, version))
        if broken is not None:
            return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": broken}), True
        try:
            module = self._module(spec)
            function = getattr(module, spec.handler.rsplit(".", 1)[1])
            context = _Context(spec.name, spec.arn, spec.memory_mb, spec.timeout_s, function_version=version)
            with accounts.running_in(spec.account):
                result = function(event, context)
            return json.dumps(result, default=str), False
        except Exception as exc:
            return json.dumps(
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-5:],
                }
            ), True


registry = Registry()
