"""A TCP proxy on 127.0.0.1 that makes a healthy server slow: for the watchdog's tests.

``connect_delay``: seconds before each new connection reaches the server;
``reply_delay``: seconds before each chunk of the server's bytes reaches the client
(the protocol is request/answer, so that is a delay per round trip).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class SlowProxy:
    def __init__(self, port: int, *, connect_delay: float = 0.0,
                 reply_delay: float = 0.0) -> None:
        self.upstream = ("127.0.0.1", port)
        self.connect_delay = connect_delay
        self.reply_delay = reply_delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, server_url: str) -> str:
        return server_url.replace(f":{self.upstream[1]}/", f":{self.port}/")

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        time.sleep(self.connect_delay)
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
        self._pump(server, client, self.reply_delay)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while chunk := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:  # either side ending ends both (the other pump then stops too)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
