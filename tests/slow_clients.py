"""Slow clients for the endpoint's tests and benchmarks/miner_probe.py: reconnecting slow uploads."""

from __future__ import annotations

import socket
import threading


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed this non-blocking socket (a read says so without waiting)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except BlockingIOError:
        return False


class SlowBodies:
    """``n`` connections that send a request head (no auth headers), then a body byte every ``interval_s``, and
    reconnect as soon as the server closes them (the slow-upload attack of issue 23), in a thread."""

    def __init__(self, address: tuple[str, int], n: int, interval_s: float = 0.5, body: int = 1000) -> None:
        self.address, self.n, self.interval_s, self.body = address, n, interval_s, body
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowBodies:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.address, timeout=2)
            sock.sendall(b"POST /submission HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.body)
            sock.setblocking(False)
        except OSError:
            return None
        self.connects += 1
        return sock

    def _run(self) -> None:
        socks: list[socket.socket | None] = [None] * self.n
        while not self._stop.is_set():
            for i, sock in enumerate(socks):
                if sock is not None:
                    try:
                        sock.send(b"x")
                        if not closed_by_server(sock):
                            continue
                    except OSError:
                        pass
                    sock.close()
                socks[i] = self._connect()
            self._stop.wait(self.interval_s)
        for sock in socks:
            if sock is not None:
                sock.close()
