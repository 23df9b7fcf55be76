"""In-process Lambda handlers (trainctl/sandbox/lambda_runtime.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainctl.sandbox.lambda_runtime import FunctionSpec, Registry


def _spec(tmp_path: Path, body: str) -> FunctionSpec:
    (tmp_path / "app.py").write_text(body)
    return FunctionSpec("fn", "Fn", tmp_path, "app.handler", {"TABLE": "t1"}, 30, 128, "arn:aws:lambda:::function:fn")


def test_given_a_handler_that_reads_its_environment_at_import_then_it_sees_its_own_variables(tmp_path: Path) -> None:
    registry = Registry()
    registry.register(_spec(tmp_path, "import os\nTABLE = os.environ['TABLE']\ndef handler(e, c):\n    return TABLE\n"))
    assert registry.invoke("fn", {}) == ('"t1"', False)
    assert "TABLE" not in os.environ  # put back as it was


def test_given_other_threads_reading_the_environment_when_a_handler_is_imported_then_it_is_never_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # boto3 reads region and credentials from the environment: an import that clears it, even for a moment, sends
    # another thread's new client to another account (seen as a duplicate hook delivery running its checks twice).
    registry = Registry()
    registry.register(_spec(tmp_path, "def handler(e, c):\n    return 1\n"))

    def refuse() -> None:
        raise AssertionError("os.environ.clear() called while other threads may read the environment")

    monkeypatch.setattr(os.environ, "clear", refuse)
    registry.preload()
    assert registry.invoke("fn", {}) == ("1", False)


def test_given_a_broken_version_when_it_is_invoked_then_it_fails_and_other_versions_do_not(tmp_path: Path) -> None:
    registry = Registry()
    registry.register(_spec(tmp_path, "def handler(e, c):\n    return c.function_version\n"))
    registry.break_version("fn", "2", "cannot reach its table")
    assert registry.invoke("fn", {}, version="1") == ('"1"', False)
    payload, errored = registry.invoke("fn", {}, version="2")
    assert errored and "cannot reach its table" in payload
