"""boto3 clients for the traffic hooks, built on first use.

Lazily, so that importing a hook module stays cheap and so that a client is created after the sandbox (or a test)
has installed its moto mock / botocore event handlers. Timeouts are short and retries bounded because a hook lives on
a time budget; calls that run user code (Invoke, StartSyncExecution) are never retried by the SDK, since a retry
would run the check twice.
"""

from __future__ import annotations

import threading
from typing import Any

# (connect timeout s, read timeout s, max attempts). user_code: a read timeout above the longest check (the hook's
# own thread timeout enforces the budget) and a single attempt.
_PROFILES: dict[str, tuple[int, int, int]] = {"control": (3, 10, 3), "user_code": (3, 900, 1)}


class LazyClient:
    """Holds a boto3 client, or builds one the first time `get()` is called."""

    def __init__(self, service: str, profile: str = "control", client: Any | None = None) -> None:
        self._service = service
        self._profile = profile
        self._client = client
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    connect, read, attempts = _PROFILES[self._profile]
                    config = Config(
                        connect_timeout=connect,
                        read_timeout=read,
                        retries={"mode": "standard", "max_attempts": attempts},
                    )
                    self._client = boto3.client(self._service, config=config)  # type: ignore[call-overload]
        return self._client


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
