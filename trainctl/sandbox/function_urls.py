"""Lambda function URLs with AuthType AWS_IAM, as AWS fronts them for the sandbox's people.

In AWS the caller signs the request with SigV4 and Lambda authenticates it; the function receives payload format 2.0
with the caller in `requestContext.authorizer.iam` ("Invoking Lambda function URLs", request payload). Here the
scripted person is who the scenario says (`as_principal`): the emulator builds the same event around that identity and
returns the function's HTTP response (statusCode, body), as the URL would. `sandbox serve` answers the stack's URLs
over loopback with the same event, the caller being whoever signed the HTTP request (server.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

URL_ID = "abcdefghijklmnopqrstuvwxyz012345"  # 32 characters, as Lambda's url-ids


def invoke(function: str, caller_arn: str, body: dict[str, Any] | str, now: datetime, region: str) -> tuple[int, Any]:
    """`body`: the request body as the URL receives it (`sandbox serve` passes the HTTP client's text as sent)."""
    from trainctl.sandbox.lambda_runtime import registry

    account = caller_arn.split(":")[4]
    principal_id = "AROAEXAMPLEROLEID0001" + (
        ":" + caller_arn.rsplit("/", 1)[-1] if ":assumed-role/" in caller_arn else ""
    )
    domain = f"{URL_ID}.lambda-url.{region}.on.aws"
    text = body if isinstance(body, str) else json.dumps(body)
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": domain, "content-length": str(len(text))},
        "requestContext": {
            "accountId": account,
            "apiId": URL_ID,
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLEACCESSKEY",
                    "accountId": account,
                    "callerId": principal_id,
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": caller_arn,
                    "userId": principal_id,
                }
            },
            "domainName": domain,
            "domainPrefix": URL_ID,
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "trainctl-sandbox",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": text,
        "isBase64Encoded": False,
    }
    version = function.rsplit(":", 1)[-1] if function.count(":") >= 7 else "$LATEST"
    payload, errored = registry.invoke(function, event, version)
    if errored:  # an unhandled error: the URL answers 502 (Lambda's "Internal Server Error" for function errors)
        return 502, json.loads(payload)
    response = json.loads(payload)
    return int(response.get("statusCode", 200)), json.loads(response.get("body") or "null")
