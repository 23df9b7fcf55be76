"""The code the sandbox runs for a fleet function that no example defines: a healthy API Gateway proxy handler.

A scenario's `fail` hook behaviour breaks a *version* (lambda_runtime.Registry.break_version), never this code, so
the same stand-in serves the running release and the new one.
"""

from __future__ import annotations

import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = {"ok": True, "function": getattr(context, "function_name", "?"), "version": context.function_version}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
