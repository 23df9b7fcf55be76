"""`pipx install .` as an operator gets it: a wheel built from the repository, installed into a venv of its own,
run from a directory that is not the checkout. What pipx does is `python -m venv` + `pip install <wheel>`; here the
new venv borrows the dependencies already installed in this one (a .pth line), so the test needs no network."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a clean clone does not have: environments, caches, earlier builds.
NOT_SOURCE = (".git", ".venv*", ".aws-sam", "__pycache__", "build", "dist", "*.egg-info", ".*_cache", ".sandbox")

pytestmark = pytest.mark.slow


# setuptools in this environment (the dev extra): build offline; without it pip fetches the build requirements.
OFFLINE = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []


def _wheel(source: Path, dist: Path) -> Path:
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *OFFLINE, "-w", str(dist), str(source))
    wheels = list(dist.glob("release_train-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _stack_files(wheel: Path) -> set[str]:
    return {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("trainctl/_stack/")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A clean copy of the repository and the wheel `pip wheel .` (what pipx runs) builds from it."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    return source, _wheel(source, work / "dist")


@pytest.fixture(scope="module")
def installed(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv with release-train installed from its wheel (not editable)."""
    wheel, venv = built[1], tmp_path_factory.mktemp("install") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "borrowed-dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel))
    return venv / "bin"


def _run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _trainctl(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "TRAINCTL_STACK_DIR", "VIRTUAL_ENV"}}
    return subprocess.run(
        [str(bin_dir / "trainctl"), *args],
        cwd=cwd,
        env={**clean, "COLUMNS": "250", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_given_the_wheel_installed_in_its_own_venv_then_trainctl_runs_from_the_package_not_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    where = _run(str(installed / "python"), "-c", "import trainctl.resources as r; print(r.stack_root())", cwd=tmp_path)
    version = _trainctl(installed, tmp_path, "--version")

    stack = Path(where.strip())
    assert stack.parts[-2:] == ("trainctl", "_stack")
    assert stack.is_relative_to(installed.parent)  # inside the venv: the checkout is not used
    assert not stack.is_relative_to(ROOT)
    assert version.returncode == 0, version.stderr
    assert "0.1.0" in version.stdout


def test_given_the_installed_package_when_the_example_fleet_is_validated_then_it_is_the_packaged_one(
    installed: Path, tmp_path: Path
) -> None:
    done = _trainctl(installed, tmp_path, "fleet", "validate", "--output", "json")

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert Path(doc["path"]).parts[-3:] == ("trainctl", "_stack", "fleet.yaml")
    assert doc["fleet"] == "acme-shop"
    assert doc["services"] == 6


def test_given_the_installed_package_when_simulated_from_elsewhere_then_the_packaged_fleet_releases(
    installed: Path, tmp_path: Path
) -> None:
    done = _trainctl(installed, tmp_path, "simulate", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["status"] == "SUCCEEDED"
    assert [s["name"] for s in doc["stages"]] == ["staging", "prod"]
    # The example service's canaries ran the checks its own template declares (a service without an example gets
    # the stand-in's "smoke"): the packaged examples/ are complete.
    company = [d for d in doc["deployments"] if d["service"] == "company-service"]
    checks = {c["name"] for d in company for h in d["hooks"] for i in h["invocations"] for c in i["result"]["checks"]}
    assert company
    assert checks
    assert "smoke" not in checks


def test_given_the_installed_package_when_a_shipped_scenario_is_named_then_it_runs(
    installed: Path, tmp_path: Path
) -> None:
    done = _trainctl(installed, tmp_path, "simulate", "--scenario", "staging-build-fails", "--json")

    assert done.returncode == 1, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["scenario"] == "staging-build-fails"
    assert doc["status"] == "FAILED"
    assert "catalog" in doc["reason"]


def test_given_the_installed_package_when_the_shipped_three_account_fleet_is_named_then_it_releases(
    installed: Path, tmp_path: Path
) -> None:
    done = _trainctl(installed, tmp_path, "simulate", "--fleet", "three-accounts", "--json")

    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["status"] == "SUCCEEDED"
    # prod's canaries, the ECS one included, ran in prod's account with the packaged target stack's hooks
    assert {d["account"] for d in doc["deployments"]} == {"333333333333"}
    assert "ECS" in {d.get("platform") for d in doc["deployments"]}


def test_given_no_stack_files_when_simulated_then_one_line_says_what_is_missing_exit_3(
    installed: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()

    done = _trainctl(installed, tmp_path, "simulate", "--json", TRAINCTL_STACK_DIR=str(empty))

    assert done.returncode == 3
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{empty} lacks template.yaml" in done.stderr
    assert "Traceback" not in done.stderr


def test_given_the_wheel_then_it_ships_every_stack_file_the_sandbox_reads(built: tuple[Path, Path]) -> None:
    source, wheel = built
    shipped = {name.removeprefix("trainctl/_stack/") for name in _stack_files(wheel)}
    expected = {
        "template.yaml",
        "fleet.yaml",
        "samconfig.toml",
        *(str(p.relative_to(source)) for p in source.glob("statemachines/*.json")),
        *(str(p.relative_to(source)) for p in source.glob("functions/*/app.py")),
        *(str(p.relative_to(source)) for p in source.glob("examples/scenarios/*.yaml")),
        *(str(p.relative_to(source)) for p in source.glob("examples/*/src/**/*.py")),
        *(str(p.relative_to(source)) for p in source.glob("examples/fleets/*.yaml")),
        *(str(p.relative_to(source)) for p in source.glob("examples/*/app/*.py")),
        "accounts/target-account.yaml",
    }

    assert expected <= shipped, sorted(expected - shipped)
    assert not {name for name in shipped if name.startswith(("tests/", "layers/", "trainctl/", ".venv"))}


def test_given_an_sdist_when_a_wheel_is_built_from_it_then_it_ships_the_same_stack_files(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    source, wheel = built
    sdist = (
        _run(
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path / 'sdist')!r}))",
            cwd=source,
        )
        .strip()
        .splitlines()[-1]
    )
    with tarfile.open(tmp_path / "sdist" / sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")

    again = _wheel(tmp_path / "unpacked" / sdist.removesuffix(".tar.gz"), tmp_path / "dist")

    assert _stack_files(again) == _stack_files(wheel)
