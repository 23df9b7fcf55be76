"""`trainctl sandbox serve`: the embedded AWS on loopback, with a train running in it (docs/sandbox-serve.md)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import click

from trainctl.cli import main, world_files, world_options
from trainctl.convention import USAGE, err, fail, guarded, output_option


@main.group()
def sandbox() -> None:
    """The embedded AWS: try operating a train without an account."""


@sandbox.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True, help="on 127.0.0.1 (0: any)")
@world_options("everything succeeds; approvals are yours (trainctl approve)")
@click.option(
    "--speed",
    type=click.FloatRange(min=1.0),
    default=60.0,
    show_default=True,
    help="virtual seconds per wall second (60: a 6-minute build takes 6 s)",
)
@output_option
def serve(
    port: int,
    fleet_name: str | None,
    scenario_name: str | None,
    log_path: Path | None,
    speed: float,
    output: str,
) -> None:
    """Serve the sandbox's AWS on 127.0.0.1 with the stack created and a train running; print the environment to
    export. Runs until Ctrl-C or SIGTERM."""
    from trainctl.sandbox import server
    from trainctl.sandbox.scenario import Scenario, load_scenario

    root, fleet, scenario_path = world_files(fleet_name, scenario_name)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def announce(environment: dict[str, str]) -> None:
        if output == "json":
            click.echo(json.dumps(environment, indent=2))
        else:
            for line in server.exports(environment):
                click.echo(line)
        sys.stdout.flush()
        err.print(
            f"sandbox serving {environment['AWS_ENDPOINT_URL']} (speed {speed:g}x): export the lines above, "
            "then e.g. `trainctl status`; Ctrl-C stops it",
            soft_wrap=True,
            markup=False,
        )

    with guarded():
        scenario = load_scenario(scenario_path) if scenario_path else Scenario(name="default", approvals={})
        if "schedule_time" not in scenario.model_fields_set:
            # Operator commands read the wall clock: a train that starts now reads as today's, not as the
            # scenarios' fixed Monday (a scenario may still name its own schedule_time).
            scenario = scenario.model_copy(update={"schedule_time": datetime.now(UTC).replace(microsecond=0)})
        try:
            server.serve(
                fleet,
                scenario,
                root,
                port,
                speed,
                stop,
                announce,
                log_path,
                str(scenario_path) if scenario_path else "default scenario",
            )
        except OSError as exc:
            fail(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror}): pick another port or 0", USAGE)
    err.print("sandbox stopped", markup=False)
    sys.stdout.flush()
    sys.stderr.flush()
    # The server, the train's threads and the emulated account are shut down; what is left is the interpreter
    # collecting moto's objects at exit, which took ~10 s: nothing in it needs to run.
    os._exit(0)
