"""The sandbox never reaches a real endpoint: not unlikely, impossible.

Two layers, both installed once per process:
- a Python audit hook refuses every socket connection and name lookup to a non-loopback host while a simulation is
  sealed, and from any sandbox participant thread at any time (a thread that outlived its simulation cannot reach
  AWS with the credentials of whoever runs the tests);
- botocore's `Endpoint._send` (reached only when no `before-send` handler, moto's included, answered a request)
  refuses it with the URL in the message (the audit hook alone would surface as a connection error).

One exception, made by name: the DNS names of load balancers the sandbox itself created in moto (trainctl/sandbox/
ecs.py) resolve to 127.0.0.1, where the sandbox serves their listeners, so the traffic hooks reach an ECS test listener
by the name ELBv2 gives it, as on AWS. Only names registered with `serve_name_on_loopback` resolve; any other name
(another *.elb.amazonaws.com included) is refused as before.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import botocore.endpoint

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
_state = threading.local()
_sealed = 0
_lock = threading.Lock()
_installed = False


class SandboxEscape(RuntimeError):
    """Something in the sandbox tried to reach a host that is not this machine."""


_served: dict[str, int] = {}  # sandbox load balancer DNS name -> how many simulations serve it on loopback


def serve_name_on_loopback(name: str) -> None:
    """Resolve `name` (a load balancer the sandbox created) to 127.0.0.1 until `stop_serving_name`."""
    install()
    with _lock:
        key = name.lower().rstrip(".")
        _served[key] = _served.get(key, 0) + 1


def stop_serving_name(name: str) -> None:
    with _lock:
        key = name.lower().rstrip(".")
        left = _served.get(key, 0) - 1
        if left > 0:
            _served[key] = left
        else:
            _served.pop(key, None)


def _served_name(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    return isinstance(host, str) and host.lower().rstrip(".") in _served


def is_loopback(host: str | None) -> bool:
    if host is None:
        return True
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES or _served_name(name):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _guarded() -> bool:
    if _sealed:
        return True
    from trainctl.sandbox.vtime import VThread

    return isinstance(threading.current_thread(), VThread)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("socket.connect", "socket.getaddrinfo") or not _guarded():
        return
    if event == "socket.getaddrinfo":
        host = args[0]
    else:
        address = args[1]
        if not isinstance(address, tuple):  # AF_UNIX paths stay on this machine
            return
        host = address[0]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not is_loopback(None if host is None else str(host)):
        raise SandboxEscape(f"sandbox: refused a connection to {host!r}: nothing in the sandbox may leave this machine")


def _send_unless_sealed(self: Any, request: Any) -> Any:
    if _guarded():
        host = urlsplit(str(getattr(request, "url", ""))).hostname
        if not is_loopback(host):
            raise SandboxEscape(
                f"sandbox: no emulator or moto backend answered {getattr(request, 'method', '?')} {request.url}; "
                "refused instead of sending it to AWS"
            )
    return _original_send(self, request)


_original_send = getattr(botocore.endpoint.Endpoint, "_send")  # noqa: B009 (private: not in the type stubs)
_original_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """socket.getaddrinfo, with the sandbox's load balancer names answered as 127.0.0.1 (never looked up)."""
    return _original_getaddrinfo("127.0.0.1" if _served_name(host) else host, *args, **kwargs)


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        sys.addaudithook(_audit)
        setattr(botocore.endpoint.Endpoint, "_send", _send_unless_sealed)  # noqa: B010
        socket.getaddrinfo = _getaddrinfo  # urllib3 (requests) and http.client resolve through it
        _installed = True


@contextlib.contextmanager
def sealed() -> Iterator[None]:
    """While a simulation runs: no thread in this process may reach a non-loopback host."""
    global _sealed
    install()
    with _lock:
        _sealed += 1
    try:
        yield
    finally:
        with _lock:
            _sealed -= 1
