"""Account ops: register, login, logout, get_profile, set_profile."""
from __future__ import annotations

import hashlib
import logging
import os
import secrets

import gevent

from messenger_protocol import ErrorCode, ProtocolError
from messenger_protocol.messages import is_valid_user_id

from .. import passwords
from ..config import Config
from ..media import check_image
from ..storage import users
from ..limits import Limits
from ..storage.pool import Pool
from ..storage.push import Target
from . import Caller, Reply, check_logged_in

log = logging.getLogger(__name__)


def token_hash(token: str) -> bytes:
    """Tokens are stored hashed, so a database leak does not hand out live sessions."""
    return hashlib.sha256(token.encode("ascii")).digest()


class Accounts:
    """Registration, login sessions and profiles."""

    def __init__(self, config: Config, pool: Pool, server_id: str, limits: Limits) -> None:
        self.config = config
        self.passwords = passwords.PasswordHasher()
        self.limits = limits
        self.pool = pool
        self.server_id = server_id
        self.profile_dir = config.data_dir / "profiles"

    def do_register(self, caller: Caller, user_id: str, password: str, name: str | None) -> Reply:
        self.limits.logins_per_address.check(caller.peer_ip)
        pw_hash = self.passwords.hash(password)
        with self.pool.transaction("register") as cur:
            created = users.create_user(cur, user_id, name or user_id, pw_hash)
        if not created:
            raise ProtocolError(ErrorCode.CONFLICT, f"the user id {user_id!r} is taken; choose another")
        log.info("registered %s", user_id)
        return {"user_id": user_id, "name": name or user_id}

    def do_login(self, caller: Caller, user_id: str, password: str, listen_host: str | None,
                 listen_port: int | None, listen_tls_fingerprint: bytes | None) -> Reply:
        """Check the password and open a session; return its token and push secret."""
        self.limits.logins_per_address.check(caller.peer_ip)
        self.limits.logins_per_user.check(user_id)
        delay = self.limits.failed_logins.delay(user_id)
        if delay:
            gevent.sleep(delay)   # guessing gets slower with every failure
        with self.pool.transaction("login.lookup") as cur:
            stored = users.password_hash(cur, user_id)
        if not self.passwords.verify(password, stored):
            self.limits.failed_logins.failed(user_id)
            # Same words whether the id exists or not.
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "wrong user id or password")
        self.limits.failed_logins.succeeded(user_id)
        token = secrets.token_urlsafe(32)
        push_secret = secrets.token_bytes(32)
        listen_ip = listen_host or caller.peer_ip
        with self.pool.transaction("login.session") as cur:
            if caller.token_hash is not None:  # a second login on one connection replaces the first
                users.close_session(cur, caller.token_hash)
            users.open_session(cur, token_hash(token), user_id, listen_ip, listen_port,
                               push_secret, self.server_id, listen_tls_fingerprint)
            user = users.get_user(cur, user_id)
        assert user is not None
        caller.bind(Target(token_hash(token), user_id, listen_ip, listen_port, push_secret,
                           listen_tls_fingerprint, self.server_id))
        return {"user_id": user_id, "name": user.name, "token": token, "push_secret": push_secret,
                "login_ip": listen_ip, "login_port": listen_port}

    def do_logout(self, caller: Caller) -> Reply:
        check_logged_in(caller)
        assert caller.token_hash is not None
        with self.pool.transaction("logout") as cur:
            users.close_session(cur, caller.token_hash)
        caller.unbind()
        return {}

    def close_session(self, token_hash_: bytes) -> None:
        """A connection ended without logout: the user is offline on that session."""
        with self.pool.transaction("session.close") as cur:
            users.close_session(cur, token_hash_)

    def take_session(self, token_hash_: bytes) -> bool:
        """A logged-in connection a sibling worker passed here: its session is held here from
        now on. False when the session is no longer online (the connection is then closed)."""
        with self.pool.transaction("session.move") as cur:
            return users.move_session(cur, token_hash_, self.server_id) is not None

    def do_get_profile(self, caller: Caller, user_id: str | None) -> Reply:
        me = check_logged_in(caller)
        target = user_id or me
        with self.pool.transaction("get_profile") as cur:
            user = users.get_user(cur, target)
        if user is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no user {target!r}")
        image = self._read_profile_image(user.image_path)
        return {"user_id": user.user_id, "name": user.name, "image": image, "online": user.online}

    def do_set_profile(self, caller: Caller, name: str | None, image: bytes | None) -> Reply:
        me = check_logged_in(caller)
        image_path = None
        if image is not None:
            kind = check_image(image, self.config.max_profile_image_bytes, "the profile image")
            image_path = self._write_profile_image(me, image, kind)
        with self.pool.transaction("set_profile") as cur:
            users.update_profile(cur, me, name, image_path)
            user = users.get_user(cur, me)
        assert user is not None
        return {"user_id": me, "name": user.name}

    def _write_profile_image(self, user_id: str, data: bytes, kind: str) -> str:
        # The id was validated by the protocol layer; check again because it names a file.
        if not is_valid_user_id(user_id):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "invalid user id")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        name = f"{user_id}.{'png' if kind == 'png' else 'jpg'}"
        target = self.profile_dir / name
        tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return f"profiles/{name}"

    def _read_profile_image(self, image_path: str | None) -> bytes | None:
        if not image_path:
            return None
        path = (self.config.data_dir / image_path).resolve()
        if self.profile_dir.resolve() not in path.parents:
            log.error("profile image path escapes the data dir: %r", image_path)
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
