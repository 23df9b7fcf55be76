"""A real HTTP server on 127.0.0.1 that answers from a route table and records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    base_url: str = ""
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)  # (method, path) -> (status, json)
    requests: list[Recorded] = field(default_factory=list)

    def route(self, method: str, path: str, status: int, body: Any) -> None:
        self.routes[(method, path)] = (status, body)


@contextmanager
def loopback_server() -> Iterator[Loopback]:
    state = Loopback()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(
                Recorded(
                    self.command, self.path, dict(self.headers.items()), self.rfile.read(length) if length else b""
                )
            )
            status, body = state.routes.get((self.command, self.path), (404, {"message": "Not Found"}))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
