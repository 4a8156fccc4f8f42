"""``messenger-peer``: the headless client. Every command prints JSON objects, one per line,
on stdout; a failure prints ``{"ok": false, "error": {"code": ..., "message": ...}}`` and exits
non-zero (1 for an error from the server or the network, 2 for bad usage)."""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any, Callable, Sequence

from messenger_protocol import ErrorCode, ProtocolError

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


def _need_password(args: argparse.Namespace) -> str:
    if not args.password:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a password is needed: --password or MESSENGER_PASSWORD")
    return args.password


def _need_user(args: argparse.Namespace) -> str:
    if not args.user:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "a user id is needed: --user or MESSENGER_USER")
    return args.user


def login(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    return peer.login(_need_user(args), _need_password(args))


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
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        server = parse_address(args.server)
    except ValueError as exc:
        parser.error(str(exc))
    peer = Peer(server, timeout=args.timeout)
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
