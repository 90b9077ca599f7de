"""What every stand-in for an outside service shares (development and the test suite only).

A stand-in is a small real HTTP server (stdlib ``http.server``, threaded) with fault
injection over HTTP, so tests and developers exercise UBI's clients against real sockets:

- ``POST /_faults`` ``{"mode": "down"|"slow"|"5xx"|"429"|..., "delay": s, "retry_after": s,
  "next_n": N}`` applies to the service's own calls (the next N, or all until
  ``DELETE /_faults``): ``down`` drops the connection without an answer, ``slow`` answers
  after ``delay`` seconds, ``5xx`` answers 503, ``429`` answers 429 with ``Retry-After``;
  a stand-in may add modes of its own.
- ``GET /_received``: every call it saw, for tests to assert on; ``DELETE /_received``
  forgets them (and what the stand-in stored).

A subclass names its ``service``, adds its modes to ``fault_modes``, and answers its routes in
``handle(method, path, body)``; :meth:`StandIn.respond` applies the shared faults first.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

SHARED_FAULT_MODES = ("down", "slow", "5xx", "429")


@dataclass
class Fault:
    mode: str
    delay: float = 0.0
    retry_after: float = 1.0
    remaining: int | None = None  # None: until cleared


@dataclass
class Answer:
    """A stand-in's answer: a status and a JSON body, or ``None`` for a dropped connection."""

    status: int | None
    body: Any = None
    headers: dict[str, str] | None = None


class StandIn:
    """A stand-in server; ``start()`` serves it in a thread, ``url`` is its base URL."""

    service: ClassVar[str] = "stand-in"
    fault_modes: ClassVar[tuple[str, ...]] = SHARED_FAULT_MODES

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.fault: Fault | None = None
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self.thread = threading.Thread(target=self.server.serve_forever, name=self.service,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve(self) -> None:
        """Run in the foreground (``ubi devserver ...``) until interrupted."""
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()

    # --- faults and the record of calls ---

    def set_fault(self, body: Any) -> Answer:
        if not isinstance(body, dict) or body.get("mode") not in self.fault_modes:
            return Answer(400, {"error": "bad_request",
                                "reason": f"mode must be one of {self.fault_modes}"})
        next_n = body.get("next_n")
        fault = Fault(body["mode"], float(body.get("delay", 0)),
                      float(body.get("retry_after", 1)),
                      int(next_n) if next_n is not None else None)
        with self.lock:
            self.fault = fault
        return Answer(200, {"mode": fault.mode, "next_n": fault.remaining})

    def take_fault(self) -> Fault | None:
        with self.lock:
            fault = self.fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.fault = None
            return fault

    def record(self, **call: Any) -> None:
        with self.lock:
            self.calls.append({**call, "at": time.time()})

    def received(self) -> dict[str, Any]:
        """What ``GET /_received`` answers; a subclass adds what it stored."""
        with self.lock:
            return {"calls": list(self.calls)}

    def forget(self) -> None:
        """``DELETE /_received``: called with the lock held; a subclass clears its store too."""
        self.calls.clear()

    def shared_fault(self, fault: Fault | None) -> Answer | None:
        """The answer a shared fault gives (after ``slow`` has slept), else None."""
        if fault is None:
            return None
        if fault.mode == "slow":
            time.sleep(fault.delay)
        elif fault.mode == "down":
            return Answer(None)
        elif fault.mode == "5xx":
            return Answer(503, {"error": "unavailable", "reason": "injected fault"})
        elif fault.mode == "429":
            return Answer(429, {"error": "too_many_requests"},
                          {"Retry-After": f"{fault.retry_after:g}"})
        return None

    def handle(self, method: str, path: str, body: Any) -> Answer:
        """The service's own routes (a subclass answers them)."""
        return Answer(404, {"error": "not_found"})


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read /_received

        def _send(self, answer: Answer) -> None:
            if answer.status is None:  # no answer: the connection just drops
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (answer.headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"null")
            except ValueError:
                return None

        def _dispatch(self, method: str) -> None:
            body = self._body() if method in ("POST", "PUT") else None
            if self.path == "/_faults" and method == "POST":
                return self._send(standin.set_fault(body))
            if self.path == "/_faults" and method == "DELETE":
                with standin.lock:
                    standin.fault = None
                return self._send(Answer(200, {"ok": True}))
            if self.path == "/_received" and method == "GET":
                return self._send(Answer(200, standin.received()))
            if self.path == "/_received" and method == "DELETE":
                with standin.lock:
                    standin.forget()
                return self._send(Answer(200, {"ok": True}))
            return self._send(standin.handle(method, self.path, body))

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

    return Handler
