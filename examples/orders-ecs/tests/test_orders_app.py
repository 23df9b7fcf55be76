"""orders-ecs app on a real loopback socket: the endpoints the release-train hooks check (see OrdersChecks in
template.yaml). No conftest (this folder is collected with the repository's tests); app/ is put on sys.path."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))

import orders_app


@pytest.fixture
def base_url() -> Iterator[str]:
    server = orders_app.serve(0, "v7")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_given_the_service_when_health_is_asked_then_it_answers_ok_with_its_version(base_url: str) -> None:
    assert _call(base_url + "/health") == (200, {"status": "ok", "version": "v7"})


def test_given_an_order_when_created_then_it_can_be_read_and_not_created_twice(base_url: str) -> None:
    assert _call(base_url + "/orders", {"id": "o-1", "qty": 2}) == (201, {"id": "o-1", "qty": 2})
    assert _call(base_url + "/orders/o-1") == (200, {"id": "o-1", "qty": 2})
    assert _call(base_url + "/orders", {"id": "o-1"})[0] == 409


@pytest.mark.parametrize("body", [{}, {"id": 3}, {"id": "a/b"}, [1]])
def test_given_a_bad_order_when_created_then_it_is_refused_with_400(base_url: str, body: Any) -> None:
    status, answer = _call(base_url + "/orders", body)

    assert status == 400 and "'id'" in answer["message"]


def test_given_an_unknown_order_when_read_then_404(base_url: str) -> None:
    assert _call(base_url + "/orders/nope") == (404, {"message": "no order nope"})
