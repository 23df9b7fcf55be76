"""Break glass: one audited override of a guardrail, for one train, by a named person with a reason.

The override is a *grant*: issued by the BreakGlass function (the stack creates it only when `AllowBreakGlass` is
true), for exactly one execution name, and signed with an HMAC KMS key whose key policy lets only that function's role
`GenerateMac` and only PlanRelease's role `VerifyMac`. Anyone may put a `break_glass` block in an execution input;
PlanRelease honours it only when the signature verifies, the grant names this very execution, and it is fresh. So the
override needs its own IAM permission (calling the BreakGlass URL), and a grant cannot be forged, edited or replayed.

What a grant may override is a closed list: today only the bake (`skip: ["bake"]`). Never the approval: a release
that reaches the last stage without a person's answer is what must never happen.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from release_train.domain.errors import InvalidInput

#: How long after issue PlanRelease still honours a grant. The function starts the execution itself, so the first
#: PlanRelease runs within seconds; the hour covers its retries (Lambda errors and SourceUnavailable back-offs, each
#: attempt up to its 120 s timeout). Replay is excluded anyway: a grant names one execution, and Step Functions
#: refuses a second execution of the same name on a state machine for 90 days (StartExecution, "name").
GRANT_LIFETIME = timedelta(hours=1)
#: Clocks of two Lambdas differ by far less; a grant "from the future" beyond this is refused.
CLOCK_SKEW = timedelta(minutes=2)
MAC_ALGORITHM = "HMAC_SHA_256"
EXECUTION_NAME = r"^breakglass-[a-f0-9]{12}$"

Override = Literal["bake"]


class Grant(BaseModel):
    """What the person asked for and who they are (the IAM identity Lambda authenticated on the URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    execution_name: Annotated[str, Field(pattern=EXECUTION_NAME)]
    identity: Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:\S{1,1900}$")]
    reason: Annotated[str, Field(min_length=10, max_length=1000)]
    skip: Annotated[tuple[Override, ...], Field(min_length=1, max_length=1)]
    issued_at: AwareDatetime

    def message(self) -> bytes:
        """The exact bytes signed and verified: canonical JSON, so re-serialising can never change a valid grant."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


class BreakGlass(BaseModel):
    """The `break_glass` block of an execution input: the grant and its MAC (base64, as KMS returns it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grant: Grant
    mac: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9+/=]+$")]


class MacVerifier(Protocol):
    def verify(self, message: bytes, mac: str) -> bool: ...


def honour(block: BreakGlass, verifier: MacVerifier | None, execution_name: str, now: datetime) -> Grant:
    """The grant, if PlanRelease may act on it; otherwise InvalidInput naming what is wrong (nothing written yet).

    `verifier` is None when the stack does not allow break glass (no key exists to verify with)."""
    field = "execution input"
    if verifier is None:
        raise InvalidInput(
            field, ["break_glass: this stack does not allow break glass (AllowBreakGlass=false); start without it"]
        )
    grant = block.grant
    # Signature first: nothing in an unverified grant (its name, its times) is worth an answer.
    if not verifier.verify(grant.message(), block.mac):
        raise InvalidInput(
            field, ["break_glass: the grant's signature does not verify; only the BreakGlass function issues grants"]
        )
    if grant.execution_name != execution_name:
        raise InvalidInput(
            field,
            [
                f"break_glass: the grant was issued for execution {grant.execution_name}, not {execution_name}; "
                "a grant is good for the one start it was issued for"
            ],
        )
    if now - grant.issued_at > GRANT_LIFETIME:
        raise InvalidInput(field, [f"break_glass: the grant expired (issued {grant.issued_at.isoformat()})"])
    if grant.issued_at - now > CLOCK_SKEW:
        raise InvalidInput(field, [f"break_glass: the grant is issued in the future ({grant.issued_at.isoformat()})"])
    return grant
