"""Several AWS accounts in one sandbox: the tools account (moto's default) and the accounts a fleet's stages name.

moto keeps accounts apart by the access key a request is signed with (`moto.iam.models.get_account_id_from`: a key
STS handed out for a role in account X belongs to X) or, before that, by an `x-moto-account-id` header
(`BaseResponse.get_current_account`). The sandbox uses both, as AWS would give each caller its credentials:
- the emulators and the runner act in a target account with keys from `sts:AssumeRole` of a role there
  (`session_for`), and the train's functions reach one through `TargetAccounts`, which assumes the train role itself;
- a Lambda function that lives in a target account (its hooks) runs in-process with the process's environment
  credentials, where on AWS it would get its execution role's: while it runs (`running_in`), every request from its
  thread -- and from threads it starts, such as the hooks' check worker -- carries the header naming its account,
  and the emulated APIs (`caller_account`) answer from that account's world.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

ACCOUNT = "123456789012"  # moto's default account: the tools account
SANDBOX_ROLE = "sandbox-operator"  # whom the runner and the emulators act as in a target account

_local = threading.local()
_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()
_installed = False


def current() -> str | None:
    """The account of the function running on this thread, None outside a target account's function."""
    return getattr(_local, "account", None)


@contextlib.contextmanager
def running_in(account: str | None) -> Iterator[None]:
    """Run the block as a function of `account` (None or the tools account: as the process itself)."""
    saved = current()
    _local.account = None if account in (None, ACCOUNT) else account
    try:
        yield
    finally:
        _local.account = saved


def caller_account(access_key: str | None) -> str:
    """The account an emulated API answers for: the running function's, else the one moto gives the key."""
    account = current()
    if account is not None:
        return account
    if not access_key:
        return ACCOUNT
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(access_key))


def access_key_of(request_signer: Any) -> str | None:
    """The access key a botocore client signs with (its RequestSigner's credentials), None if unsigned."""
    credentials = getattr(request_signer, "_credentials", None)
    if credentials is None:
        return None
    return str(credentials.get_frozen_credentials().access_key)


def session_for(account: str | None, region: str) -> Any:
    """A boto3 session acting in `account` (None: the tools account, from the environment)."""
    import boto3

    if account in (None, ACCOUNT):
        return boto3.session.Session(region_name=region)
    with _sessions_lock:
        session = _sessions.get(account)
        if session is None:
            assumed = boto3.client("sts", region_name=region).assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/{SANDBOX_ROLE}", RoleSessionName="release-train-sandbox"
            )["Credentials"]
            session = _sessions[account] = boto3.session.Session(
                aws_access_key_id=assumed["AccessKeyId"],
                aws_secret_access_key=assumed["SecretAccessKey"],
                aws_session_token=assumed["SessionToken"],
                region_name=region,
            )
        return session


def reset() -> None:
    """Forget the sessions: each simulation has a fresh moto, where old keys name no account."""
    with _sessions_lock:
        _sessions.clear()


def _name_the_account(request: Any, **_: Any) -> None:
    account = current()
    if account is not None:
        request.headers["x-moto-account-id"] = account


def install() -> None:
    """Once per process: the header on every request a target account's function makes, and threads inheriting the
    account of the thread that started them (a hook's check runs on a worker thread of its own)."""
    global _installed
    if _installed:
        return
    import botocore.handlers

    botocore.handlers.BUILTIN_HANDLERS.append(("request-created", _name_the_account))
    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        account = current()
        if account is not None:
            run = self.run

            def run_in_account() -> None:
                with running_in(account):
                    run()

            self.run = run_in_account  # type: ignore[method-assign]
        original_start(self)

    threading.Thread.start = start  # type: ignore[method-assign]
    _installed = True
