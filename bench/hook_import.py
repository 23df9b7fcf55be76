"""Import time of the traffic-hook handler modules, per Python version, against a 300 ms target.

    .venv/bin/python bench/hook_import.py [--runs 9] [--pythons 3.12 3.13]

For each Python found (~/.pyenv/versions/<x.y.*>, then PATH), a throwaway venv under /tmp/release-train-bench/
gets the layer's requirements plus boto3 (the Lambda runtime ships boto3). Each measurement is a fresh process:
`import app` (cwd functions/<hook>, PYTHONPATH=layers/release_train: the layout Lambda gives handler + layer),
wall clock, median of --runs, minus the median of an interpreter that imports nothing.

Columns:
  import          import app, .pyc present (a warm disk; what sam build ships if __pycache__ is packaged)
  import, no pyc  same with bytecode compiled in the process (PYTHONPYCACHEPREFIX to an empty dir)
  + clients       import app, then build the hook's service and its five boto3 clients: the cost the hook
                  defers to its first invocation by creating clients lazily (adapters/hook_clients.py)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "release_train"
HOOKS = ("pre_traffic", "post_traffic")
TARGET_MS = 300.0
VENVS = Path(tempfile.gettempdir()) / "release-train-bench"

CLIENTS = (
    "import app; s = app.runtime.service; "
    "[c.get() for c in (s.deployments._codedeploy, s.deployments._elbv2, s.checks._ssm, s.invoker._lambda, "
    "s.express._states)]"
)


def find_python(version: str) -> Path | None:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*"), reverse=True):
        binary = candidate / "bin" / f"python{version}"
        if binary.exists():
            return binary
    found = shutil.which(f"python{version}")
    # A pyenv shim answers even when that version is not installed: not a Python.
    return Path(found) if found and "/shims/" not in found else None


def venv_for(python: Path, version: str) -> Path:
    """A venv with the layer's requirements, rebuilt only when requirements.txt changes."""
    requirements = (LAYER / "requirements.txt").read_text()
    digest = hashlib.sha256((requirements + str(python)).encode()).hexdigest()[:12]
    venv = VENVS / f"py{version}"
    marker = venv / ".requirements-sha"
    if marker.exists() and marker.read_text() == digest:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(LAYER / "requirements.txt"), "boto3"], check=True)
    marker.write_text(digest)
    return venv


def median_ms(python: Path, code: str, cwd: Path, runs: int, env: dict[str, str]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", code], cwd=cwd, env=env, check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(python: Path, hook: str, runs: int) -> dict[str, float]:
    cwd = ROOT / "functions" / hook
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "PYTHONPATH": str(LAYER),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "IDEMPOTENCY_TABLE": "bench",
        "POWERTOOLS_SERVICE_NAME": "release-train-hooks",
    }
    subprocess.run([str(python), "-c", "import app"], cwd=cwd, env=env, check=True)  # write the .pyc files once
    base = median_ms(python, "pass", cwd, runs, env)
    warm = median_ms(python, "import app", cwd, runs, env) - base
    with tempfile.TemporaryDirectory() as empty:
        no_pyc_env = {**env, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        cold = median_ms(python, "import app", cwd, max(3, runs // 3), no_pyc_env) - base
    clients = median_ms(python, CLIENTS, cwd, runs, env) - base
    return {"interpreter": base, "import": warm, "import_no_pyc": cold, "with_clients": clients}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--pythons", nargs="+", default=["3.12", "3.13"])
    args = parser.parse_args()

    rows = []
    for version in args.pythons:
        python = find_python(version)
        if python is None:
            print(f"Python {version}: not installed (~/.pyenv/versions or PATH), skipped")
            continue
        print(f"Python {version}: {python}; venv {VENVS / ('py' + version)} ...", flush=True)
        venv_python = venv_for(python, version) / "bin" / "python"
        for hook in HOOKS:
            rows.append((version, hook, measure(venv_python, hook, args.runs)))

    print()
    print(f"Hook module import time, median of {args.runs} fresh processes, interpreter start-up subtracted")
    header = ("python", "hook", "start-up", "import", "ratio", "import, no pyc", "+ clients", "target")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for version, hook, m in rows:
        print(
            f"| {version} | {hook} | {m['interpreter']:.0f} ms | {m['import']:.0f} ms | {m['import'] / TARGET_MS:.2f}"
            f" | {m['import_no_pyc']:.0f} ms | {m['with_clients']:.0f} ms | {TARGET_MS:.0f} ms |"
        )
    over = [r for r in rows if r[2]["import"] > TARGET_MS]
    print(f"\n{'OVER TARGET: ' + ', '.join(f'{v}/{h}' for v, h, _ in over) if over else 'all within target'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
