"""A real HTTP server for webhook and Alertmanager tests: each test asks it for endpoints of its own,
each answering a planned series of statuses (200, 500, 400, or "hang": no answer until released)."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

HANG = "hang"


class Request(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes
    answer: int | str

    def json(self) -> Any:
        return json.loads(self.body)


class Sink:
    """Endpoints by path; requests kept per path. Shared by a session, state per endpoint."""

    def __init__(self) -> None:
        self.plans: dict[str, list[int | str]] = {}
        self.requests: dict[str, list[Request]] = {}
        self.lock = threading.Lock()
        self.released = threading.Event()  # ends every hang (the server's stop)
        self.servers: list[ThreadingHTTPServer] = []
        self.port = self.serve(0)

    def serve(self, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen on `port` (0: any free one) too, over TLS with `tls`, sharing the endpoints; returns the port."""
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return server.server_address[1]

    def close(self, port: int) -> None:
        """Stop listening on `port`."""
        for server in [s for s in self.servers if s.server_address[1] == port]:
            server.shutdown()
            server.server_close()
            self.servers.remove(server)

    def stop(self) -> None:
        self.released.set()
        for server in list(self.servers):
            self.close(server.server_address[1])

    def endpoint(self, *answers: int | str, port: int | None = None) -> str:
        """A new URL answering `answers` in turn, the last one for ever after."""
        path = f"/hook/{uuid.uuid4().hex}"
        with self.lock:
            self.plans[path] = list(answers or (200,))
            self.requests[path] = []
        return f"http://127.0.0.1:{port or self.port}{path}"

    def got(self, url: str) -> list[Request]:
        """Every request `url` received, answered or not."""
        with self.lock:
            return list(self.requests[url[url.index("/hook/") :]])

    def delivered(self, url: str) -> list[Request]:
        """The requests `url` answered 2xx."""
        return [r for r in self.got(url) if isinstance(r.answer, int) and 200 <= r.answer < 300]

    def set_plan(self, url: str, *answers: int | str) -> None:
        with self.lock:
            self.plans[url[url.index("/hook/") :]] = list(answers)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int | str:
        with self.lock:
            plan = self.plans.get(path)
            if plan is None:
                return 404
            answer = plan.pop(0) if len(plan) > 1 else plan[0]
            self.requests[path].append(Request(path, headers, body, answer))
            return answer


def _handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = sink._answer(self.path, dict(self.headers.items()), body)
            if answer == HANG:
                sink.released.wait(30)  # the client gives up long before
                return
            assert isinstance(answer, int)
            reply = b'{"ok": true}' if answer < 300 else b"no such thing, see the logs"
            self.send_response(answer)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
