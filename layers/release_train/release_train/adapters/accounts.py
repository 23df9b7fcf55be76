"""Clients for a stage in another AWS account (docs/accounts.md): the train assumes the stage account's train role
(accounts/target-account.yaml, named by the stack's TargetAccountRoleName) with the ExternalId the role requires.

Credentials come from botocore's own assume-role machinery: `AssumeRoleCredentialFetcher` calls sts:AssumeRole and
`DeferredRefreshableCredentials` holds the answer, fetching on first use and again only when it nears expiry (botocore's
advisory/mandatory refresh windows, 15/10 minutes), thread-safe. One set per account, shared by its clients.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
)

from release_train.domain.errors import InvalidInput

_ACCOUNT = re.compile(r"^\d{12}$")
# AssumeRole ExternalId: 2-1224 characters of [\w+=,.@:/-] (STS API reference, AssumeRole request parameters).
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
SESSION_NAME = "release-train"


class _Assumed(CredentialProvider):
    """Hands the refreshable credentials to a botocore session through its public credential-resolver chain."""

    METHOD = "assume-role"
    CANONICAL_NAME = "release-train-target-account"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


class _NoCache(dict[str, Any]):
    """The fetcher's own cache would answer from memory by the wall clock; refreshing is the credentials' job."""

    def __setitem__(self, key: str, value: Any) -> None:
        return None


class TargetAccounts:
    """`client(account, service)`: the tools account's own client for its own account (or none named), otherwise a
    client signed with the target account's train role. Cached per (account, service)."""

    def __init__(
        self,
        source: botocore.session.Session,
        *,
        home_account: str,
        role_name: str,
        external_id: str,
        region: str | None = None,
        partition: str = "aws",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        config: Config | None = None,
    ) -> None:
        problems = []
        if not _ROLE_NAME.match(role_name):
            problems.append(f"TargetAccountRoleName: '{role_name}' is not an IAM role name (1-64 of [\\w+=,.@-])")
        if not _EXTERNAL_ID.match(external_id):
            problems.append("TargetAccountExternalId: must be 2-1224 characters of letters, digits and _+=,.@:/-")
        if problems:
            raise InvalidInput("target account settings", problems)
        self._source = source
        self._home = home_account
        self._role_name = role_name
        self._external_id = external_id
        self._region = region or source.get_config_variable("region")
        self._partition = partition
        self._clock = clock
        self._config = config  # the adapters' retry policy (adapters/aws.py), for the target accounts' clients too
        self._sessions: dict[str, botocore.session.Session] = {}
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def role_arn(self, account: str) -> str:
        return f"arn:{self._partition}:iam::{account}:role/{self._role_name}"

    def client(self, account: str | None, service: str) -> Any:
        account = account or self._home
        if not _ACCOUNT.match(account):
            raise InvalidInput("stage account", [f"'{account}' is not a 12-digit AWS account id"])
        with self._lock:
            key = (account, service)
            if key not in self._clients:
                session = self._source if account == self._home else self._session_for(account)
                self._clients[key] = session.create_client(service, region_name=self._region, config=self._config)
            return self._clients[key]

    def _session_for(self, account: str) -> botocore.session.Session:
        if account not in self._sessions:
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=self._source.create_client,
                source_credentials=self._source.get_credentials(),
                role_arn=self.role_arn(account),
                extra_args={"RoleSessionName": SESSION_NAME, "ExternalId": self._external_id},
                cache=_NoCache(),
            )
            credentials = DeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method="assume-role", time_fetcher=self._clock
            )
            session = botocore.session.Session()
            session.get_component("credential_provider").insert_before("env", _Assumed(credentials))
            self._sessions[account] = session
        return self._sessions[account]
