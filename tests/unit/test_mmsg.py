"""Batched datagrams on loopback (no root needed): what is read, who sent it, answers in place."""

import socket

from boxnet.kernel import mmsg


def test_batch_reads_answers_in_place_and_skips_the_unanswered() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    for index, client in enumerate(clients):
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        client.sendto(b"q%d-payload" % index, server.getsockname())
    batch = mmsg.Batch(8)
    lengths = batch.receive(server.fileno())
    assert lengths == [10, 10, 10]
    assert [batch.datagram(i, n) for i, n in enumerate(lengths)] == [b"q0-payload", b"q1-payload", b"q2-payload"]
    assert [batch.sender(i) for i in range(3)] == [c.getsockname() for c in clients]
    batch.answer_keeping_id(0, b"-answer0")
    batch.answer(2, b"whole answer 2")
    assert batch.send(server.fileno()) == 2
    assert clients[0].recv(100) == b"q0-answer0"
    assert clients[2].recv(100) == b"whole answer 2"
    clients[1].settimeout(0.05)
    try:
        clients[1].recv(100)
        raise AssertionError("an unanswered datagram got an answer")
    except TimeoutError:
        pass
    assert batch.receive(server.fileno()) == []  # nothing waiting: no block, no error
    # A second round reuses the buffers: the address room was given back after the first.
    clients[1].sendto(b"again", server.getsockname())
    assert batch.receive(server.fileno()) == [5] and batch.sender(0) == clients[1].getsockname()
