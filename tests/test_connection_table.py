"""The REST server's connection table: a snapshot of its sockets is taken under the table's lock,
so closing every connection at shutdown is safe while handlers come and go."""
from __future__ import annotations

import socket
import threading

from poster_similarity.serving.server.limits import ConnectionTable


def test_sockets_is_a_snapshot_safe_against_concurrent_changes():
    table = ConnectionTable(cap=64)
    pairs = [socket.socketpair() for _ in range(8)]
    try:
        for a, _ in pairs[:4]:
            assert table.admit(a)
        assert set(table.sockets()) == {a for a, _ in pairs[:4]}
        stop, errors = threading.Event(), []

        def churn():  # handlers opening and closing connections meanwhile
            while not stop.is_set():
                for a, _ in pairs[4:]:
                    table.admit(a)
                for a, _ in pairs[4:]:
                    table.remove(a)

        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(2000):  # bounded: the iteration the server does at shutdown
                try:
                    for s in table.sockets():
                        s.fileno()
                except RuntimeError as e:  # "OrderedDict mutated during iteration" without the lock
                    errors.append(e)
        finally:
            stop.set()
            t.join(10)
        assert not errors
        assert {a for a, _ in pairs[:4]} <= set(table.sockets())
    finally:
        for a, b in pairs:
            a.close()
            b.close()
