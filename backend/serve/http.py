"""Serving the app with uvicorn on a socket we bind ourselves (so port 0 is known before serving).

uvicorn runs one asyncio event loop: an idle or slow connection costs a socket and a little
memory, never a thread (the old stdlib server spent one thread per connection). Limits set here:
``timeout_keep_alive`` closes idle keep-alive connections, ``header_timeout_s`` closes connections
whose request headers do not arrive in time (slowloris), ``backlog`` is the listen queue (the
stdlib default was 5), ``limit_concurrency`` answers 503 beyond that many open connections and
tasks, and the app itself bounds request bodies (app.py).
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from planner.errors import PlannerError

from .app import ServeSettings, create_app
from .batching import BatchScheduler
from .host import AdapterHost

DEFAULT_BACKLOG = 2048            # uvicorn's default
DEFAULT_KEEP_ALIVE_S = 5          # uvicorn's default
DEFAULT_LIMIT_CONCURRENCY = 1000  # connections + tasks before 503s
DEFAULT_HEADER_TIMEOUT_S = 10     # to send a request's headers, on a new or a kept-alive connection


def _timed_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol plus a deadline for each request's headers.

    uvicorn starts its keep-alive timer only after a response, so a client that connects and
    never finishes its headers would hold a connection (and a slot of ``limit_concurrency``)
    forever; with this, it is closed after ``header_timeout_s``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11Protocol(H11Protocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_timeout_s, self._expire)

        def _expire(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._header_timer.cancel()
            self._arm()

        def connection_lost(self, exc):  # type: ignore[no-untyped-def]
            self._header_timer.cancel()
            super().connection_lost(exc)

    return TimedH11Protocol


@dataclass(frozen=True)
class ServerOptions:
    """Socket and uvicorn limits, and how requests are batched."""

    backlog: int = DEFAULT_BACKLOG
    timeout_keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    limit_concurrency: int | None = DEFAULT_LIMIT_CONCURRENCY
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_batch_size: int = 32
    batch_window_s: float = 0.002


class AdapterServer:
    """A bound socket, the scheduler and the uvicorn server over the app; ``serve_forever()`` answers."""

    def __init__(self, host: AdapterHost, sock: socket.socket, settings: ServeSettings, options: ServerOptions,
                 log: Callable[[str], None] | None) -> None:
        import uvicorn

        self.host, self.sock = host, sock
        self.scheduler = BatchScheduler(host, max_batch_size=options.max_batch_size, window_s=options.batch_window_s)
        self.app = create_app(host, self.scheduler, settings, log)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                backlog=options.backlog, timeout_keep_alive=options.timeout_keep_alive_s,
                                limit_concurrency=options.limit_concurrency, timeout_graceful_shutdown=5,
                                server_header=False, http=_timed_protocol(options.header_timeout_s))
        self.server = uvicorn.Server(config)

    @property
    def server_address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def serve_forever(self) -> None:
        """Serve until Ctrl-C (main thread) or ``shutdown()``."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.scheduler.close()

    def shutdown(self) -> None:
        self.server.should_exit = True

    def server_close(self) -> None:
        self.sock.close()


@dataclass
class RunningServer:
    """A server answering in a background thread; ``close()`` stops it and frees the port."""

    server: AdapterServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=30)
        self.server.server_close()


def make_server(host: AdapterHost, address: str = "127.0.0.1", port: int = 8000,
                log: Callable[[str], None] | None = None, settings: ServeSettings = ServeSettings(),
                options: ServerOptions = ServerOptions()) -> AdapterServer:
    """Bind (port 0 picks a free one); call ``serve_forever()`` on the result to answer requests."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.create_server((address, port), family=family, backlog=options.backlog)
    except OSError as exc:
        raise PlannerError(f"cannot listen on {address}:{port}: {exc.strerror}; "
                           f"pick another --port (0 picks a free one)") from None
    return AdapterServer(host, sock, settings, options, log)


def start_server(host: AdapterHost, address: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] | None = None, settings: ServeSettings = ServeSettings(),
                 options: ServerOptions = ServerOptions()) -> RunningServer:
    """Serve in a daemon thread (tests, notebooks, the benchmark); returns once it answers."""
    server = make_server(host, address, port, log, settings, options)
    thread = threading.Thread(target=server.serve_forever, name="plan-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return RunningServer(server, thread)
