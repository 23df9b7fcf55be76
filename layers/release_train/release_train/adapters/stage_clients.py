"""A stage's adapters in the stage's own account (docs/accounts.md): the tools account's clients for a stage without
`account` (or naming this account), otherwise clients signed with the target account's train role (TargetAccounts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import botocore.session
from botocore.config import Config

from release_train.adapters.accounts import TargetAccounts
from release_train.adapters.alarms import Alarms
from release_train.adapters.deployments import Deployments
from release_train.adapters.functions import Functions


class StageClients:
    def __init__(self, home: Callable[[str], Any], home_account: str, targets: TargetAccounts | None) -> None:
        self._home, self._home_account, self._targets = home, home_account, targets

    @classmethod
    def from_environment(cls, env: Mapping[str, str], home: Callable[[str], Any], config: Config) -> StageClients:
        """ACCOUNT_ID, TARGET_ACCOUNT_ROLE_NAME and TARGET_ACCOUNT_EXTERNAL_ID (template.yaml). Without an ExternalId
        (the stack's TargetAccountExternalId is empty) there are no target accounts: a stage naming one is an error
        when it is read, not at import, so one-account stacks need none of this."""
        external_id = env.get("TARGET_ACCOUNT_EXTERNAL_ID", "")
        targets = (
            TargetAccounts(
                botocore.session.get_session(),
                home_account=env.get("ACCOUNT_ID", ""),
                role_name=env.get("TARGET_ACCOUNT_ROLE_NAME", "release-train-target"),
                external_id=external_id,
                config=config,
            )
            if external_id
            else None
        )
        return cls(home, env.get("ACCOUNT_ID", ""), targets)

    def client(self, account: str | None, service: str) -> Any:
        if account in (None, "", self._home_account):
            return self._home(service)
        if self._targets is None:
            raise RuntimeError(
                f"a stage is in account {account}, but the stack has no TargetAccountExternalId: set it (and "
                "AllowedTargetAccounts) to the ExternalId of accounts/target-account.yaml (docs/accounts.md)"
            )
        return self._targets.client(account, service)

    def functions(self, account: str | None) -> Functions:
        return Functions(self.client(account, "lambda"))

    def alarms(self, account: str | None) -> Alarms:
        return Alarms(self.client(account, "cloudwatch"))

    def deployments(self, account: str | None) -> Deployments:
        return Deployments(self.client(account, "codedeploy"))
