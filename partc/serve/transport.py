"""Serve stage, transport: HTTP/1.1 on asyncio and h11, with the limits a public endpoint needs.

The app (partc/serve/app.py) decides what a request may send before its
body is read (`App.admit`: route, method, token, size) and answers it once
it is complete (`handler(body)`); this module moves the bytes and enforces,
per connection and for the whole process:

- a connection limit: at it, the oldest connection that is only waiting
  for request headers (idle keep-alive, or a client too slow to send them)
  is closed to make room; when every connection is busy with a request,
  the new one gets 503 and is closed. So stalled clients cannot lock out
  a health probe or a real client;
- a header timeout (request line and headers, also the idle time between
  keep-alive requests) and a body timeout (the whole body): 408, closed;
- a body size limit (413, from Content-Length before reading when given)
  and a budget of body bytes held at once by all connections (503);
- a bounded shutdown: on SIGTERM/SIGINT the listening socket closes, idle
  connections close, requests in flight get `shutdown_grace` seconds, then
  every connection is dropped (a client stalled mid-body cannot hold the
  process);
- one log line, no traceback, for a client that goes away mid-request.

h11 parses and frames HTTP (Content-Length and chunked bodies, keep-alive,
pipelining, `Expect: 100-continue`); nothing here interprets the body.
Why not uvicorn: it has no header or body timeout and no connection cap,
and its shutdown waits for stalled clients; these limits are what the
server is for, so they live in one small module we own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

from partc.errors import RequestError
from partc.serve import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SHUTDOWN_GRACE,
)

log = logging.getLogger("partc.serve")

LINGER_SECONDS = 2.0  # after refusing a body mid-upload, how long its remaining bytes are read and dropped


@dataclass(frozen=True)
class Limits:
    max_body: int = DEFAULT_MAX_BODY
    max_buffered: int = DEFAULT_MAX_BUFFERED
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    max_header_bytes: int = 16 * 1024  # request line plus headers (431 beyond)


@dataclass
class RequestHead:
    """What is known of a request before its body: filled in by the transport, labelled by the app."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    client: str  # "host:port", for the log
    started: float = field(default_factory=time.perf_counter)
    model: str = ""  # set by the app: the model addressed (metrics label)
    endpoint: str = "unknown"  # set by the app: which endpoint (metrics label)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[bytes], Awaitable[Response]]


class App:
    """What the transport needs from an application."""

    def admit(self, head: RequestHead) -> Response | tuple[object, Handler]:
        """Refuse now (a Response), or accept: (a body reader with feed(chunk) and body(), the handler)."""
        raise NotImplementedError

    def finished(self, head: RequestHead, status: int) -> None:
        """Called once per answered request (metrics, access log)."""

    def shutting_down(self) -> None:
        """Called when shutdown starts (readiness turns false)."""


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload, allow_nan=False).encode(), "application/json", dict(headers or {}))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def raw_response(response: Response) -> bytes:
    """The bytes of a complete HTTP/1.1 response that closes the connection, for when h11 cannot frame
    one (no request was read: a connection over the limit, headers that never completed)."""
    lines = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}", f"content-type: {response.content_type}",
             f"content-length: {len(response.body)}", "connection: close",
             *(f"{k}: {v}" for k, v in response.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class ClientLog:
    """Warnings about misbehaving clients, at most `burst` lines per `window` seconds.

    Each is one line (never a traceback); past the burst the rest of the
    window is counted and reported in one line, so a flood of stalled or
    vanishing clients cannot flood the log.
    """

    def __init__(self, burst: int = 50, window: float = 10.0):
        self.burst = burst
        self.window = window
        self.started = time.monotonic()
        self.lines = 0
        self.suppressed = 0

    def warning(self, message: str, *args) -> None:
        now = time.monotonic()
        if now - self.started >= self.window:
            if self.suppressed:
                log.warning("%d more client warnings in the last %.0f s were not logged", self.suppressed, self.window)
            self.started, self.lines, self.suppressed = now, 0, 0
        if self.lines < self.burst:
            self.lines += 1
            log.warning(message, *args)
        else:
            self.suppressed += 1


class Server:
    """The shared state of one listening socket: its connections, the body budget, the app."""

    def __init__(self, app: App, limits: Limits):
        self.app = app
        self.limits = limits
        self.connections: dict[Connection, None] = {}  # in the order they opened (oldest first)
        self.buffered = 0  # body bytes reserved by requests being read or handled
        self.client_log = ClientLog()
        self.stopping = False

    def protocol(self) -> Connection:
        return Connection(self)

    def make_room(self) -> bool:
        """Close the oldest connection that is only waiting for request headers; False when there is none."""
        for connection in self.connections:
            if connection.waiting_for_headers:
                self.connections.pop(connection)
                connection.close()
                return True
        return False

    async def serve(self, sock, on_listening: Callable[[], None] | None = None) -> None:
        """Serve on a bound socket until SIGTERM/SIGINT, then shut down within the grace period."""
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(self.protocol, sock=sock, backlog=min(1024, self.limits.max_connections * 2))
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if on_listening:
            on_listening()
        try:
            await stop.wait()
            stop.clear()
            log.info("shutting down: %d connection(s) open, %.3g s grace", len(self.connections),
                     self.limits.shutdown_grace)
            await self.shutdown(listener, stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def shutdown(self, listener: asyncio.base_events.Server, interrupt: asyncio.Event | None = None) -> None:
        """Stop listening, close idle connections, give requests in flight the grace period, drop the rest."""
        self.stopping = True
        self.app.shutting_down()
        listener.close()
        for connection in list(self.connections):
            if connection.waiting_for_headers:
                connection.close()
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.connections and time.monotonic() < deadline and not (interrupt and interrupt.is_set()):
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.abort("the shutdown grace period ended")


class Connection(asyncio.Protocol):
    """One client connection: h11 state, its timers, the request being read or handled."""

    def __init__(self, server: Server):
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self.client = "?"
        self.timer: asyncio.TimerHandle | None = None
        self.head: RequestHead | None = None  # the request being read or handled
        self.reader = None  # its body reader while the body arrives
        self.handler: Handler | None = None
        self.expected = None  # its Content-Length, when given
        self.reserved = 0  # its share of the server's body budget
        self.task: asyncio.Task | None = None  # its handler, once the body is complete
        self.refusing = False  # a response was sent before the body was read: close after it
        self.received_any = False  # bytes of the next request have arrived (for the header timeout)
        self.draining: int | None = None  # after a refusal mid-body: bytes read and dropped since
        self.paused = False  # reading is paused until the request being handled is answered
        self.closed = False

    # ---- asyncio callbacks ----

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        if len(self.server.connections) >= self.limits.max_connections and not self.server.make_room():
            transport.write(raw_response(error_response(
                503, f"the server has {self.limits.max_connections} connections open, each busy with a request; "
                     "retry later", {"retry-after": "1"})))
            self.closed = True
            transport.close()
            return
        self.server.connections[self] = None
        self._arm(self.limits.header_timeout, self._header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.draining is not None:
            self.draining += len(data)
            if self.draining > self.limits.max_body:
                self.close()
            return
        if self.head is None:
            self.received_any = True
        self.h11.receive_data(data)
        if self.task is not None and not self.paused:  # a pipelined request while one is handled: stop reading
            self.transport.pause_reading()
            self.paused = True
        self._process()

    def eof_received(self) -> bool:
        if self.draining is not None:
            self.close()
        elif self.reader is not None:  # the client stopped sending mid-body: nothing to answer
            self._went_away()
            self.close()
        elif not self.closed:
            self.h11.receive_data(b"")
            self._process()
        return True  # keep the write side open: a half-closed client still gets its response

    def connection_lost(self, exc) -> None:
        if self.reader is not None:
            self._went_away()
        elif self.task is not None and not self.task.done():
            self._warn("client %s went away before the response to %s %s", self.client, self.head.method, self.head.path)
            self.task.cancel()
        self._finish_request()
        self.closed = True
        self._disarm()
        self.server.connections.pop(self, None)

    def _warn(self, message: str, *args) -> None:
        self.server.client_log.warning(message, *args)

    def _went_away(self) -> None:
        """One log line for a client that left mid-body (no traceback: it is the client's business)."""
        expected = f" of {self.expected}" if self.expected is not None else ""
        self._warn("client %s went away after %d%s body bytes of %s %s", self.client, self.reader.size, expected,
                   self.head.method, self.head.path)
        self.reader = None

    # ---- state ----

    @property
    def waiting_for_headers(self) -> bool:
        """No request is being read or handled: idle keep-alive, or request headers not complete yet."""
        return self.head is None and self.task is None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._disarm()
            self.transport.close()

    def abort(self, why: str) -> None:
        if self.head is not None:
            self._warn("dropped client %s during %s %s: %s", self.client, self.head.method, self.head.path, why)
        self.reader = None  # logged here, not again as a client that went away
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.closed = True
        self._disarm()
        self.transport.abort()

    def _arm(self, seconds: float, callback) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ---- the request cycle ----

    def _process(self) -> None:
        """Handle every complete h11 event buffered so far (several, when a client pipelines)."""
        while not self.closed and self.task is None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                self._refuse(RequestError(e.error_status_hint, f"bad HTTP request: {e}"), close=True)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _on_request(self, event: h11.Request) -> None:
        self._disarm()
        target = event.target.decode("ascii", "replace")
        headers = {name.decode("ascii", "replace").lower(): value.decode("latin-1") for name, value in event.headers}
        self.head = RequestHead(event.method.decode("ascii", "replace"), target.partition("?")[0], headers, self.client)
        if self.server.stopping:
            self._refuse(RequestError(503, "the server is shutting down"), close=True)
            return
        declared = headers.get("content-length")
        self.expected = int(declared) if declared is not None and declared.isdigit() else None
        if self.expected is not None and self.expected > self.limits.max_body:
            self._refuse(RequestError(413, f"request body of {self.expected} bytes exceeds the limit of "
                                           f"{self.limits.max_body} bytes"))
            return
        decision = self.server.app.admit(self.head)
        if isinstance(decision, Response):
            self._send(decision, close=self.h11.their_state is h11.SEND_BODY)
            self.refusing = True
            return
        self.reader, self.handler = decision
        if self.expected and not self._reserve(self.expected):
            return
        if self.h11.they_are_waiting_for_100_continue:
            self.transport.write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")))
        self._arm(self.limits.body_timeout, self._body_timeout)

    def _on_data(self, data: bytes) -> None:
        if self.refusing or self.reader is None:
            return  # the rest of a body we already answered; the connection closes after it
        if self.expected is None and not self._reserve(len(data)):
            return
        if self.reader.size + len(data) > self.limits.max_body:  # a chunked body, or more than Content-Length said
            self._refuse(RequestError(413, f"request body exceeds the limit of {self.limits.max_body} bytes"), close=True)
            return
        try:
            self.reader.feed(data)
        except RequestError as e:
            self._refuse(e, close=True)

    def _on_end(self) -> None:
        self._disarm()
        if self.refusing or self.reader is None:
            self._next_cycle()
            return
        body = self.reader.body()
        self.reader = None
        self.task = self.loop.create_task(self._handle(self.handler, body))  # one at a time: see data_received

    async def _handle(self, handler: Handler, body: bytes) -> None:
        try:
            response = await handler(body)
        except RequestError as e:
            response = error_response(e.status, e.message, e.headers)
        except asyncio.CancelledError:
            return  # the client went away
        except Exception:  # a bug in partc: the client gets a 500, the log one traceback
            log.exception("internal error answering %s %s", self.head.method, self.head.path)
            response = error_response(500, "internal server error (see the server log)")
        self._release()
        self.task = None
        if self.closed:
            return
        self._send(response, close=self.server.stopping)
        self._next_cycle()
        if not self.closed:
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
            self._process()

    def _next_cycle(self) -> None:
        """Ready the connection for the next request, or close it when HTTP says so."""
        self._finish_request()
        if self.closed:
            return
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.received_any = bool(self.h11.trailing_data[0])
            if self.server.stopping:
                self.close()
            else:
                self._arm(self.limits.header_timeout, self._header_timeout)
        elif self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state in (h11.MUST_CLOSE, h11.CLOSED):
            self.close()

    def _finish_request(self) -> None:
        self._release()
        self.head = self.reader = self.handler = self.expected = None
        self.refusing = False

    def _reserve(self, size: int) -> bool:
        if self.server.buffered + size > self.limits.max_buffered:
            self._refuse(RequestError(503, "the server holds too many request bodies at once; retry shortly",
                                      {"retry-after": "1"}), close=True)
            return False
        self.server.buffered += size
        self.reserved += size
        return True

    def _release(self) -> None:
        self.server.buffered -= self.reserved
        self.reserved = 0

    def _refuse(self, error: RequestError, close: bool = False) -> None:
        """Answer with an error before (or instead of) reading the rest of the request."""
        if self.head is None:
            self.head = RequestHead("?", "?", {}, self.client)
        self._disarm()
        self._release()
        self.reader = None
        self.refusing = True
        self._send(error_response(error.status, error.message, error.headers),
                   close=close or self.h11.their_state is h11.SEND_BODY)

    def _send(self, response: Response, close: bool = False) -> None:
        if self.closed:
            return
        headers = [("content-type", response.content_type), ("content-length", str(len(response.body))),
                   *response.headers.items()]
        if close:
            headers.append(("connection", "close"))
        try:
            data = self.h11.send(h11.Response(status_code=response.status, headers=headers,
                                              reason=HTTPStatus(response.status).phrase.encode()))
            if self.head is None or self.head.method != "HEAD":
                data += self.h11.send(h11.Data(data=response.body))
            data += self.h11.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # h11 cannot frame a response here (no complete request was read)
            data, close = raw_response(response), True
        self.transport.write(data)
        if self.head is not None:
            self.server.app.finished(self.head, response.status)
        if close:
            self._close_after_response()

    def _close_after_response(self) -> None:
        """Close; if the client is still sending a body we refused, drop its bytes for a moment first.

        Closing a socket with unread bytes resets the connection, and the
        client may lose the response (413, 408) before reading it; a
        lingering close (shut down writing, read and drop, then close) lets
        it arrive.
        """
        if self.h11.their_state is not h11.SEND_BODY or self.transport.is_closing():
            self.close()
            return
        self.draining = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_SECONDS, self.close)

    def _header_timeout(self) -> None:
        self.timer = None
        if self.received_any or self.h11.trailing_data[0]:
            self._warn("client %s sent no complete request headers within %.3g s", self.client,
                       self.limits.header_timeout)
            self._refuse(RequestError(408, f"request headers did not arrive within {self.limits.header_timeout:g} s"),
                         close=True)
        else:
            self.close()  # an idle keep-alive connection

    def _body_timeout(self) -> None:
        self.timer = None
        got = self.reader.size if self.reader is not None else 0
        expected = f" of {self.expected}" if self.expected is not None else ""
        self._warn("client %s sent %d%s body bytes of %s %s within %.3g s; closing", self.client, got, expected,
                   self.head.method, self.head.path, self.limits.body_timeout)
        self._refuse(RequestError(408, f"request body did not arrive within {self.limits.body_timeout:g} s "
                                       f"({got}{expected} bytes)"), close=True)
