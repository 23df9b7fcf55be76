"""orders: a tiny HTTP service (Python stdlib only) run by ECS behind an ALB.

GET /health -> {"status": "ok", "version": <VERSION>}; GET /orders/<id> -> the order or 404; POST /orders -> 201.
In-memory on purpose: the example is about the deployment, not storage.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ORDER_PATH = re.compile(r"^/orders/([A-Za-z0-9-]{1,64})$")


class Orders:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}

    def create(self, body: Any) -> tuple[int, dict[str, Any]]:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("id"), str)
            or not _ORDER_PATH.match(f"/orders/{body['id']}")
        ):
            return 400, {"message": "body must be a JSON object with a string 'id' (letters, digits, '-')"}
        with self._lock:
            if body["id"] in self._items:
                return 409, {"message": f"order {body['id']} exists"}
            self._items[body["id"]] = body
        return 201, body

    def get(self, order_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            found = self._items.get(order_id)
        return (200, found) if found else (404, {"message": f"no order {order_id}"})


def make_handler(orders: Orders, version: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok", "version": version})
            elif match := _ORDER_PATH.match(self.path):
                self._send(*orders.get(match.group(1)))
            else:
                self._send(404, {"message": "not found"})

        def do_POST(self) -> None:
            if self.path != "/orders":
                self._send(404, {"message": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except json.JSONDecodeError:
                self._send(400, {"message": "body is not JSON"})
                return
            self._send(*orders.create(body))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the ALB's access logs and the target group's health checks say enough

    return Handler


def serve(port: int, version: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(Orders(), version))
    server.daemon_threads = True
    return server


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8080")), os.environ.get("VERSION", "dev")).serve_forever()
