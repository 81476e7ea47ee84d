"""Helpers of the tests: unique names, and a TCP proxy that drops connections.

:class:`DroppingProxy` listens on 127.0.0.1; the tests put it between the
client and the partner BFF to drop the catalogue feed's connection for
real: after ``cut_after`` bytes from the server on the first ``cuts``
connections, both sockets are shut down, as a load balancer restart or a
network failure would. Later connections pass through untouched.
"""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Optional


def unique(prefix: str) -> str:
    """A name no other test (or run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class DroppingProxy:
    def __init__(self, upstream: str, cut_after: int, cuts: int = 1) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._cut_after = cut_after
        self._cuts_left = cuts
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self.connections = 0
        self.dropped = 0
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> "DroppingProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                downstream, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            downstream.settimeout(None)
            upstream = socket.create_connection(self._upstream, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                cut: Optional[int] = None
                if self._cuts_left > 0:
                    self._cuts_left -= 1
                    cut = self._cut_after
                self._sockets += [downstream, upstream]
            pair = (downstream, upstream)
            threading.Thread(target=self._pump, args=(downstream, upstream, None, pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, cut, pair), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, cut: Optional[int], pair) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                if cut is not None and sent + len(data) >= cut:
                    sink.sendall(data[: max(cut - sent, 0)])
                    with self._lock:
                        self.dropped += 1
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in pair:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
