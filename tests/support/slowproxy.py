"""A TCP proxy on 127.0.0.1 that makes a healthy server slow, or loses its answers.

``connect_delay``: seconds before each new connection reaches the server;
``reply_delay``: seconds before each chunk of the server's bytes reaches the client
(the protocol is request/answer, so that is a delay per round trip);
``lose_commit_answers``: how many of the next COMMITs (simple query protocol, as
psycopg sends them) reach the server, which commits, while its answer never reaches
the client: the proxy cuts that connection once the server has answered.
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
        self.lose_commit_answers = 0
        self._lock = threading.Lock()
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
        cut = threading.Event()  # a COMMIT went to the server: drop its answer, then cut
        threading.Thread(target=self._pump, args=(client, server, 0.0, cut, True),
                         daemon=True).start()
        self._pump(server, client, self.reply_delay, cut, False)

    def _commit_to_lose(self, chunk: bytes) -> bool:
        if _COMMIT not in chunk:
            return False
        with self._lock:
            if self.lose_commit_answers <= 0:
                return False
            self.lose_commit_answers -= 1
            return True

    def _pump(self, source: socket.socket, sink: socket.socket, delay: float,
              cut: threading.Event, to_server: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if to_server and self._commit_to_lose(chunk):
                    cut.set()  # before the server can answer: its answer is the next chunk
                elif not to_server and cut.is_set():
                    break  # the server committed and answered; the client never hears
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


# A simple-protocol query message: 'Q', its length (4 + 7), the text and its NUL.
_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
