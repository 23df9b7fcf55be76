"""The largest fleet the schema allows (domain/scale.py MAX_SERVICES, 10 stages), for the tests of hard limits."""

from __future__ import annotations

import random
from typing import Any

from release_train.domain.fleet import Fleet
from release_train.domain.scale import MAX_SERVICES

WORDS = ["payments", "ledger", "reconciliation", "identity", "catalog", "search", "checkout", "inventory"]


def github_fleet(
    services: int = MAX_SERVICES, stages: int = 10, seed: int = 48, webhook_secret: str | None = None
) -> dict[str, Any]:
    """GitHub sources with a token secret each; names long-ish and not sequential, so the JSON compresses no better
    than a real fleet's would. Returned as PlanRelease pins it (`Fleet.model_dump(mode="json")`)."""
    rnd = random.Random(seed)
    stage_list: list[dict[str, Any]] = [{"name": f"stage-{k}", "bake": "PT1H"} for k in range(stages - 1)]
    stage_list.append({"name": "prod", "bake": "PT1H", "approval": {"required": True}})
    fleet: dict[str, Any] = {
        "fleet": "acme",
        "defaults": {"approvers": ["arn:aws:iam::123456789012:role/ReleaseManager"]},
        "stages": stage_list,
        "services": [
            {
                "name": (name := f"{rnd.choice(WORDS)}-{rnd.choice(WORDS)}-{rnd.getrandbits(48):012x}-{i:04d}"),
                "wave": 1 + i % 5,
                "source": {
                    "github": f"acme-platform-{rnd.choice(WORDS)}/{name}-service",
                    "branch": f"release/2026-w{rnd.randint(1, 52):02d}",
                    "token_secret": f"release-train/github-token-{rnd.choice(WORDS)}",
                },
            }
            for i in range(services)
        ],
    }
    if webhook_secret:
        fleet["notifications"] = {"webhook_secret": webhook_secret}
    return Fleet.model_validate(fleet).model_dump(mode="json")
