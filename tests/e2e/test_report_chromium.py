"""`trainctl report`'s page in a real browser: headless Chromium (Debian's `chromium`) renders the page made from a
real simulated train's recorded document and screenshots it; the PNG is kept in test-artifacts/ for people to look at.

Without Chromium the test is skipped with the reason, except where RELEASE_TRAIN_REQUIRE_CHROMIUM=1 (.ci/run sets it
after installing chromium): there a missing browser fails, so CI never passes by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_report import RECORDED
from trainctl.report import render_html, report_doc

ARTIFACTS = ROOT / "test-artifacts" / "report"
WIDTH, HEIGHT = 1280, 2000
TIMEOUT_S = 120  # a cold Chromium start on a busy 2-core CI runner takes seconds, not minutes: 120 s means hung


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = "chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("RELEASE_TRAIN_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"RELEASE_TRAIN_REQUIRE_CHROMIUM=1 but {why}")
    pytest.skip(why)


def _png(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (its IHDR and IDAT chunks, PNG spec section 5)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return size[0], size[1], zlib.decompress(idat)


def test_given_the_report_page_when_chromium_renders_it_offline_then_the_screenshot_shows_it(tmp_path: Path) -> None:
    chromium = _chromium()
    saved = json.loads(RECORDED.read_text())
    doc = report_doc(saved["show"], saved["times"], saved["canaries"], [], datetime(2026, 11, 30, 12, tzinfo=UTC))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, shot = ARTIFACTS / "release.html", ARTIFACTS / "release.png"
    page.write_text(render_html(doc), encoding="utf-8")
    shot.unlink(missing_ok=True)
    command = [
        chromium,
        "--headless=new",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'profile'}",  # a throwaway profile: never a developer's running browser
        # Any host resolves to nothing: the page must render with no network at all.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    if os.geteuid() == 0:
        # Chromium refuses to start as root with its setuid/namespace sandbox ("Running as root without --no-sandbox
        # is not supported"); CI containers run as root. The page is our own static file, so nothing untrusted runs.
        command.insert(1, "--no-sandbox")
    try:
        ran = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"headless chromium did not finish within {TIMEOUT_S} s: {' '.join(command)}")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert shot.is_file(), f"no screenshot written; chromium said: {ran.stderr[-2000:]}"
    width, height, scanlines = _png(shot)
    assert (width, height) == (WIDTH, HEIGHT)
    # Non-trivial: a blank or error page compresses to a few KB of one colour; the report has text, tables and bars.
    assert shot.stat().st_size > 50_000
    assert len(set(scanlines)) > 64, "the screenshot is (nearly) one colour"
