"""Ports for a stage's own AWS account (docs/accounts.md): a stage that names `account` has its aliases, alarms and
CodeDeploy deployments there, read through that account's train role. The use cases take either a plain port (one
account: the fakes, the tools account) or a `PerAccount` provider, and ask it for the stage's account each time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from release_train.domain.fleet import Fleet

T = TypeVar("T")
P_co = TypeVar("P_co", covariant=True)  # a provider of an adapter is a provider of the port it implements


class PerAccount(Generic[P_co]):
    """`provider(account)`: the port for that account (None: the tools account)."""

    def __init__(self, make: Callable[[str | None], P_co]) -> None:
        self._make = make

    def __call__(self, account: str | None) -> P_co:
        return self._make(account)


def per_account(port: T | PerAccount[T]) -> PerAccount[T]:
    """A plain port serves every account: what one-account deployments and the unit tests' fakes pass."""
    if isinstance(port, PerAccount):
        return port
    return PerAccount(lambda _account: port)


def stage_account(fleet: Fleet, stage: str) -> str | None:
    """The account a stage names, None for the tools account (or a stage the pinned fleet no longer has)."""
    return next((s.account for s in fleet.stages if s.name == stage), None)
