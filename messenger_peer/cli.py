"""``messenger-peer``: the headless client. Every command prints JSON objects, one per line,
on stdout; a failure prints ``{"ok": false, "error": {"code": ..., "message": ...}}`` and exits
non-zero (1 for an error from the server or the network, 2 for bad usage)."""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import gevent.event

from messenger_protocol import ErrorCode, ProtocolError

from messenger_protocol.messages import RoomKey

from .client import parse_address
from .peer import Peer

Command = Callable[[Peer, argparse.Namespace], None]


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON line; bytes become base64 text so every line is valid JSON."""
    print(json.dumps(obj, ensure_ascii=False, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot print {type(value).__name__}")


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "messenger-peer")


def _need_password(args: argparse.Namespace) -> str:
    if not args.password:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a password is needed: --password or MESSENGER_PASSWORD")
    return args.password


def _need_user(args: argparse.Namespace) -> str:
    if not args.user:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a user id is needed: --user or MESSENGER_USER")
    return args.user


def login(peer: Peer, args: argparse.Namespace, live: bool = False) -> dict[str, Any]:
    return peer.login(_need_user(args), _need_password(args), live=live)


def cmd_register(peer: Peer, args: argparse.Namespace) -> None:
    reply = peer.register(_need_user(args), _need_password(args), args.name)
    emit({"ok": True, "op": "register", **reply})


def cmd_login(peer: Peer, args: argparse.Namespace) -> None:
    reply = login(peer, args)
    emit({"ok": True, "op": "login", "user_id": reply["user_id"], "name": reply["name"],
          "login_ip": reply.get("login_ip"), "login_port": reply.get("login_port")})
    peer.logout()


def cmd_profile(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    if args.set_name is not None or args.set_image is not None:
        image = None
        if args.set_image is not None:
            with open(args.set_image, "rb") as f:
                image = f.read()
        peer.set_profile(name=args.set_name, image=image)
    reply = peer.get_profile(args.of)
    image = reply.pop("image", None)
    emit({"ok": True, "op": "profile", **reply, "image_bytes": len(image) if image else 0})
    peer.logout()


def _room(text: str) -> RoomKey:
    try:
        return RoomKey.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def decode_day(day: dict[str, Any], room: str) -> list[dict[str, Any]]:
    """A day's DD.json as message lines: text decoded, other content left as base64."""
    lines = []
    for record in json.loads(day["content"])["chat"]:
        line = {"room": room, **record}
        if record.get("chat_type") == "text":
            line["text"] = base64.b64decode(record["content"]).decode("utf-8", errors="replace")
        lines.append(line)
    return lines


def cmd_create_room(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    image = _read_file(args.image) if args.image else None
    reply = peer.create_room(args.name, args.invite, image)
    emit({"ok": True, "op": "create_room", **reply})


def cmd_invite(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    emit({"ok": True, "op": "invite", "room": args.room.folder, **peer.invite(args.room, args.users)})


def cmd_leave(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    peer.leave(args.room)
    emit({"ok": True, "op": "leave", "room": args.room.folder})


def cmd_rename(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    emit({"ok": True, "op": "rename", "room": args.room.folder, **peer.rename_room(args.room, args.name)})


def cmd_rooms(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    for room in peer.list_rooms():
        emit({"room": RoomKey(room["session_id"], room["creator_id"]).folder, **room})


def cmd_members(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    for member in peer.room_members(args.room):
        emit({"room": args.room.folder, **member})


def _send(peer: Peer, args: argparse.Namespace, chat_type: str, content: bytes) -> None:
    login(peer, args)
    reply = peer.send(args.room, chat_type, content, args.txn_id)
    emit({"ok": True, "op": "send", "room": args.room.folder, "chat_type": chat_type,
          "seq": reply["seq"], "chat_time": reply["chat_time"]})


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"cannot read {path}: {exc.strerror}") from None


def cmd_send(peer: Peer, args: argparse.Namespace) -> None:
    _send(peer, args, "text", args.text.encode("utf-8"))


def cmd_send_image(peer: Peer, args: argparse.Namespace) -> None:
    _send(peer, args, "image", _read_file(args.file))


def cmd_send_emoticon(peer: Peer, args: argparse.Namespace) -> None:
    _send(peer, args, "emoticon", args.id.encode("ascii", errors="replace"))


def cmd_history(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    reply = peer.history(args.room, args.before)
    for day in reply["content"]:
        for line in decode_day(day, args.room.folder):
            emit(line)
    emit({"ok": True, "op": "history", "room": args.room.folder, "days": [d["chat_date"] for d in reply["content"]],
          "beginning": reply["beginning"]})


def cmd_init(peer: Peer, args: argparse.Namespace) -> None:
    login(peer, args)
    for room in peer.init():
        folder = RoomKey(room["session_id"], room["creator_id"]).folder
        for day in room["content"]:
            for line in decode_day(day, folder):
                emit(line)
        emit({"room": folder, "session_id": room["session_id"], "creator_id": room["creator_id"],
              "session_name": room["session_name"], "has_image": room["session_img"] is not None,
              "days": [d["chat_date"] for d in room["content"]], "gap": room["gap"],
              "last_seq": room["last_seq"], "unread": room["unread"]})


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    """One event as a JSON-ready line: the room as its folder name, text decoded."""
    line = dict(event)
    if "session_id" in line and "creator_id" in line:
        line = {"room": RoomKey(line["session_id"], line["creator_id"]).folder, **line}
    if line.get("event") == "message" and line.get("chat_type") in ("text", "emoticon"):
        line["content"] = line["content"].decode("utf-8", errors="replace")
    line["received_at"] = round(time.time(), 6)
    return line


def cmd_listen(peer: Peer, args: argparse.Namespace) -> None:
    """Stay online and print events until --count events or --timeout seconds."""
    done = gevent.event.Event()
    seen = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal seen
        if event.get("event") == "connection" and not args.connection_events:
            return
        emit(event_line(event))
        seen += 1
        if args.count and seen >= args.count:
            done.set()
    peer.on_event(on_event)
    login(peer, args, live=True)
    assert peer.listener is not None
    print(json.dumps({"listening": "%s:%d" % peer.listener.address, "user_id": peer.user_id}),
          file=sys.stderr, flush=True)
    done.wait(timeout=args.timeout)
    peer.logout()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="messenger-peer",
        description="Headless messenger client. Prints one JSON object per line.")
    parser.add_argument("--server", default=os.environ.get("MESSENGER_SERVER", "127.0.0.1:9100"),
                        help="server address HOST:PORT [MESSENGER_SERVER] (default: %(default)s)")
    parser.add_argument("--user", default=os.environ.get("MESSENGER_USER"),
                        help="user id [MESSENGER_USER]")
    parser.add_argument("--password", default=os.environ.get("MESSENGER_PASSWORD"),
                        help="password [MESSENGER_PASSWORD]; prefer the variable, flags show in ps")
    parser.add_argument("--timeout", dest="request_timeout", type=float, default=30.0,
                        help="seconds to wait for a reply")
    parser.add_argument("--data-dir", default=os.environ.get("MESSENGER_PEER_DATA_DIR", _default_data_dir()),
                        help="local history cache [MESSENGER_PEER_DATA_DIR] (default: %(default)s)")
    parser.add_argument("--listen-host", default="127.0.0.1", help="address of the push listener")
    parser.add_argument("--listen-port", type=int, default=0, help="port of the push listener (0: any free)")
    parser.add_argument("--advertise-host", help="address the server should push to, when not --listen-host")
    parser.add_argument("--tls", action="store_true", help="connect to the server with TLS (verifying its certificate)")
    parser.add_argument("--ca-file", help="CA certificate(s) to verify the server with (implies --tls)")
    parser.add_argument("--listen-tls-cert", help="PEM certificate for the push listener (it then speaks TLS)")
    parser.add_argument("--listen-tls-key", help="PEM private key of --listen-tls-cert")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("register", help="create the account --user with --password")
    p.add_argument("--name", help="display name (default: the user id)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("login", help="check the credentials: log in, print the session, log out")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("profile", help="show (and optionally change) a profile")
    p.add_argument("--of", help="whose profile to show (default: your own)")
    p.add_argument("--set-name", help="change your display name")
    p.add_argument("--set-image", help="change your profile image (PNG or JPEG file)")
    p.set_defaults(func=cmd_profile)

    room_help = "room as SESSION_ID_CREATOR_ID, e.g. 20230914_000001_kim"
    p = sub.add_parser("create-room", help="create a room and print it")
    p.add_argument("name")
    p.add_argument("--invite", nargs="*", default=[], metavar="USER", help="users to add")
    p.add_argument("--image", help="room image (PNG file)")
    p.set_defaults(func=cmd_create_room)

    p = sub.add_parser("invite", help="add users to a room you are in")
    p.add_argument("room", type=_room, help=room_help)
    p.add_argument("users", nargs="+", metavar="USER")
    p.set_defaults(func=cmd_invite)

    p = sub.add_parser("leave", help="leave a room")
    p.add_argument("room", type=_room, help=room_help)
    p.set_defaults(func=cmd_leave)

    p = sub.add_parser("rename", help="rename a room")
    p.add_argument("room", type=_room, help=room_help)
    p.add_argument("name")
    p.set_defaults(func=cmd_rename)

    p = sub.add_parser("rooms", help="list your rooms, most recent first")
    p.set_defaults(func=cmd_rooms)

    p = sub.add_parser("members", help="list a room's members")
    p.add_argument("room", type=_room, help=room_help)
    p.set_defaults(func=cmd_members)

    for name, func, arg, arg_help in (("send", cmd_send, "text", "the message"),
                                      ("send-image", cmd_send_image, "file", "a PNG or JPEG file"),
                                      ("send-emoticon", cmd_send_emoticon, "id", "an emoticon id")):
        p = sub.add_parser(name, help=f"send {arg_help} to a room")
        p.add_argument("room", type=_room, help=room_help)
        p.add_argument(arg, help=arg_help)
        p.add_argument("--txn-id", help="client transaction id; resending with the same id stores it once")
        p.set_defaults(func=func)

    p = sub.add_parser("history", help="print 3 days of a room's messages before a date")
    p.add_argument("room", type=_room, help=room_help)
    p.add_argument("--before", help="YYYY-MM-DD (default: the newest messages)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("listen", help="stay online and print one JSON line per event received")
    p.add_argument("--count", type=int, default=0, help="exit after this many events (default: no limit)")
    p.add_argument("--timeout", type=float, default=None, help="exit after this many seconds")
    p.add_argument("--connection-events", action="store_true", help="also print connection state changes")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("init", help="print the init data of every room (what a fresh client gets)")
    p.set_defaults(func=cmd_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        server = parse_address(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    peer = Peer(server, timeout=args.request_timeout, data_dir=args.data_dir, listen_host=args.listen_host,
                listen_port=args.listen_port, advertise_host=args.advertise_host, tls=args.tls,
                ca_file=args.ca_file, listen_tls_cert=args.listen_tls_cert, listen_tls_key=args.listen_tls_key)
    try:
        peer.connect()
        args.func(peer, args)
    except ProtocolError as exc:
        emit({"ok": False, "command": args.command, "error": exc.to_wire()})
        print(f"messenger-peer: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        emit({"ok": False, "command": args.command,
              "error": {"code": ErrorCode.UNAVAILABLE.value, "message": str(exc)}})
        print(f"messenger-peer: {exc}", file=sys.stderr)
        return 1
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
