"""TLS: the server with --tls-cert/--tls-key, clients verifying it, and a TLS push listener
whose certificate the server pins. Certificates come from a throw-away CA (trustme)."""
from __future__ import annotations

import socket

import pytest
import trustme

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import RoomKey
from messenger_peer import Peer

from ..support import PASSWORD, wait_for


@pytest.fixture
def ca(tmp_path):
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "peer_cert": tmp_path / "peer.pem", "peer_key": tmp_path / "peer.key"}
    authority.cert_pem.write_to_path(str(files["ca"]))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
    # A listener certificate nobody vouches for: the server trusts it only by its pinned hash.
    peer_cert = trustme.CA().issue_cert("peer.invalid")
    peer_cert.private_key_pem.write_to_path(str(files["peer_key"]))
    peer_cert.cert_chain_pems[0].write_to_path(str(files["peer_cert"]))
    return {k: str(v) for k, v in files.items()}


def test_tls_end_to_end_with_a_pinned_listener(server_factory, ca):
    server = server_factory("--tls-cert", ca["cert"], "--tls-key", ca["key"])
    a = Peer(server.address, ca_file=ca["ca"]).connect()
    a.register("a", PASSWORD)
    a.login("a", PASSWORD)
    b = Peer(server.address, ca_file=ca["ca"], listen_tls_cert=ca["peer_cert"], listen_tls_key=ca["peer_key"])
    b.connect()
    b.register("b", PASSWORD)
    got = []
    b.on_event(lambda e: got.append(e) if e["event"] == "message" else None)
    b.login("b", PASSWORD)
    reply = a.create_room("secret", invite=["b"])
    key = RoomKey(reply["session_id"], reply["creator_id"])
    a.send_text(key, "over TLS")
    wait_for(lambda: got, what="the pushed message over the TLS listener")
    assert got[0]["content"] == b"over TLS"
    assert b.listener.refused == 0 and b.conn.local_address
    a.close()
    b.close()


def test_client_refuses_a_server_it_cannot_verify(server_factory, ca):
    server = server_factory("--tls-cert", ca["cert"], "--tls-key", ca["key"])
    with pytest.raises(ProtocolError) as info:
        Peer(server.address, tls=True).connect()       # system CAs do not know our test CA
    assert info.value.code is ErrorCode.UNAVAILABLE and "certificate" in info.value.message


def test_plaintext_client_gets_nothing_from_a_tls_server(server_factory, ca):
    server = server_factory("--tls-cert", ca["cert"], "--tls-key", ca["key"])
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"\x00\x00\x00\x05hello")
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    assert b"hello" not in data and b"ok" not in data
    sock.close()
    # and the server still serves TLS clients
    with Peer(server.address, ca_file=ca["ca"]) as p:
        assert p.request("ping") == {}
