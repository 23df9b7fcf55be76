"""Where trainctl finds the stack's files: template.yaml, the state machines' ASL, every function's code, the example
fleet, services and scenarios -- what `simulate` (and `sandbox serve`) run.

Run from a checkout (an editable install, or the source tree on the path), the checkout is the stack: edits to
template.yaml or a function take effect at once. Installed from a wheel (`pipx install .`, `pip install .`), the
checkout is gone and the copy the wheel ships in `trainctl/_stack/` is used (pyproject.toml,
`[tool.setuptools.package-dir]`). Neither complete: one line saying what is missing and how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainctl.convention import AWS, USAGE, CommandError

CHECKOUT = Path(__file__).resolve().parent.parent
PACKAGED = Path(__file__).resolve().parent / "_stack"
# What the sandbox cannot start without (stack.py reads the template, runner.py both ASL files, each function's
# CodeUri under functions/); the example fleet is the default `--fleet`.
REQUIRED = (
    "template.yaml",
    "statemachines/release_train.asl.json",
    "statemachines/build_chunk.asl.json",
    "functions",
    "fleet.yaml",
)
SCENARIOS = Path("examples") / "scenarios"
FLEETS = Path("examples") / "fleets"
OVERRIDE = "TRAINCTL_STACK_DIR"  # another copy of the stack's files (a fork, a release tag's checkout)


class StackFilesMissing(CommandError):
    """Neither a checkout nor the installed package has the stack's files (exit 3: not found)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, AWS)


def missing(root: Path) -> list[str]:
    """The required files `root` lacks (empty: `root` can run the sandbox)."""
    return [name for name in REQUIRED if not (root / name).exists()]


def stack_root(candidates: tuple[Path, ...] = (CHECKOUT, PACKAGED)) -> Path:
    """The first complete copy of the stack's files: $TRAINCTL_STACK_DIR when set (it must be complete), else the
    checkout trainctl runs from, else the installed copy."""
    if os.environ.get(OVERRIDE):
        candidates = (Path(os.environ[OVERRIDE]),)
    for root in candidates:
        if not missing(root):
            return root
    lacking = "; ".join(f"{root} lacks {', '.join(missing(root))}" for root in candidates)
    raise StackFilesMissing(
        f"trainctl cannot find the release-train stack files ({lacking}): reinstall it from the repository "
        f"(pipx install --force <checkout>), run trainctl from a checkout, or set {OVERRIDE} to one"
    )


def default_root() -> Path:
    """For defaults computed at import (`--fleet`, the samconfig.toml stack name): the stack root if there is one,
    else the checkout path, so that importing trainctl never fails and the command that needs a file says which."""
    try:
        return stack_root()
    except StackFilesMissing:
        return CHECKOUT


def scenario_path(value: str, root: Path) -> Path:
    """A scenario file, or the name of one shipped with trainctl (`staging-build-fails` or `staging-build-fails.yaml`
    in examples/scenarios/). Neither: one line listing the shipped names (exit 2)."""
    return _shipped("--scenario", "scenario", value, root / SCENARIOS)


def fleet_path(value: str, root: Path) -> Path:
    """A fleet file, or the name of one shipped with trainctl (`three-accounts`, `mixed-ecs` in examples/fleets/)."""
    return _shipped("--fleet", "fleet", value, root / FLEETS)


def _shipped(option: str, what: str, value: str, folder: Path) -> Path:
    given = Path(value)
    if given.is_file():
        return given
    shipped = folder / (value if value.endswith(".yaml") else f"{value}.yaml")
    if given.name == value and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    raise CommandError(
        f"{option} {value}: no such file, and not the name of a shipped {what}; pass a {what} file or one of: "
        + (", ".join(names) or "(none shipped)"),
        USAGE,
    )
