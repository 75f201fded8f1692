"""Tokens encrypted at rest: every grant store holds sealed tokens only.

A token is sealed with AES-256-GCM (``cryptography``) under the first of the app's token
keys, with the grant's storage name and the field as associated data, so a sealed value
cannot be moved to another grant or field. Every key opens, so keys rotate without signing
anyone out: put the new key first, keep the old ones until every grant has been written
again (a refresh or a sign-in re-seals it).

:class:`SealedStore` wraps any :class:`~flask_spark.stores.base.GrantStore`: the token
manager sees plain tokens, the store sees sealed ones. A record that does not open (another
key, tampered, written in clear) reads as no grant at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .stores.base import Binding, ChangeWatch, Grant, GrantKey, GrantStore

__all__ = ["SealedStore", "Sealer"]

#: What every sealed value starts with (and the format's version).
PREFIX = "s1."
_NONCE = 12
_KEY_ID = 4


def _derive(secret: str | bytes, purpose: bytes) -> bytes:
    material = secret.encode() if isinstance(secret, str) else bytes(secret)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return hkdf.derive(material)


class Sealer:
    """Seals and opens token values.

    :param secrets: the secrets of :data:`SPARK_TOKEN_KEYS` (or ``SECRET_KEY`` and its
        fallbacks): the first seals, every one opens. Each is stretched to an AES-256 key
        with HKDF-SHA256.
    :param purpose: HKDF's ``info``: keys derived for one purpose never open another's.
    """

    def __init__(
        self, secrets: Sequence[str | bytes], purpose: bytes = b"flask-spark tokens"
    ) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self._keys: dict[bytes, AESGCM] = {}
        self._first = b""
        for secret in secrets:
            key = _derive(secret, purpose)
            key_id = hashlib.sha256(key).digest()[:_KEY_ID]
            if not self._first:
                self._first = key_id
            self._keys.setdefault(key_id, AESGCM(key))

    def __repr__(self) -> str:
        return f"<Sealer keys={len(self._keys)}>"

    def seal(self, value: str, context: str) -> str:
        """``value`` sealed for ``context`` (which the opener must name the same)."""
        if value == "":
            return ""  # an ended grant's tokens: nothing to hide
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self._first].encrypt(nonce, value.encode(), context.encode())
        blob = base64.urlsafe_b64encode(self._first + nonce + sealed).decode().rstrip("=")
        return PREFIX + blob

    def open(self, value: str, context: str) -> str | None:
        """The plain value, or ``None`` if no key opens it for ``context``."""
        if value == "":
            return ""
        if not value.startswith(PREFIX):
            return None
        try:
            blob = base64.urlsafe_b64decode(value[len(PREFIX) :] + "==")
        except (binascii.Error, ValueError):
            return None
        aead = self._keys.get(blob[:_KEY_ID])
        if aead is None or len(blob) < _KEY_ID + _NONCE + 16:
            return None
        nonce, sealed = blob[_KEY_ID : _KEY_ID + _NONCE], blob[_KEY_ID + _NONCE :]
        try:
            return aead.decrypt(nonce, sealed, context.encode()).decode()
        except (InvalidTag, UnicodeDecodeError):
            return None


class _Remembered:
    """A bounded map from a plain access token to the sealed form a store holds for it:
    compare-and-set operations must name the stored value, and sealing is not
    deterministic."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._map: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, grant_id: str, plain: str, sealed: str) -> None:
        with self._lock:
            self._map[(grant_id, plain)] = sealed
            self._map.move_to_end((grant_id, plain))
            while len(self._map) > self._size:
                self._map.popitem(last=False)

    def get(self, grant_id: str, plain: str) -> str | None:
        with self._lock:
            return self._map.get((grant_id, plain))


class SealedStore:
    """A :class:`~flask_spark.stores.base.GrantStore` that seals tokens on the way into
    ``store`` and opens them on the way out."""

    def __init__(self, store: GrantStore, sealer: Sealer) -> None:
        self.inner = store
        self.sealer = sealer
        self._sealed = _Remembered()

    def __repr__(self) -> str:
        return f"<SealedStore {self.inner!r}>"

    def changes(self) -> ChangeWatch | None:
        changes = getattr(self.inner, "changes", None)
        return None if changes is None else cast("ChangeWatch | None", changes())

    # -- the two directions --------------------------------------------------------------

    def _seal(self, grant: Grant) -> Grant:
        gid = grant.key.id
        known = self._sealed.get(gid, grant.access_token) if grant.access_token else None
        access = known or self.sealer.seal(grant.access_token, f"{gid}/access")
        sealed = replace(
            grant,
            access_token=access,
            refresh_token=self.sealer.seal(grant.refresh_token, f"{gid}/refresh"),
        )
        if grant.access_token:
            self._sealed.put(gid, grant.access_token, access)
        return sealed

    def _open(self, grant: Grant | None) -> Grant | None:
        if grant is None:
            return None
        gid = grant.key.id
        access = self.sealer.open(grant.access_token, f"{gid}/access")
        refresh = self.sealer.open(grant.refresh_token, f"{gid}/refresh")
        if access is None or refresh is None:
            return None
        if access:
            self._sealed.put(gid, access, grant.access_token)
        return replace(grant, access_token=access, refresh_token=refresh)

    def _stored_access(self, key: GrantKey, plain: str) -> str | None:
        """The sealed value the store holds for the plain access token ``plain`` of
        ``key``'s grant, or ``None`` when it holds another."""
        if plain == "":
            return ""
        known = self._sealed.get(key.id, plain)
        if known is not None:
            return known
        current = self._open(self.inner.get(key))  # remembers what it opens
        if current is None or current.access_token != plain:
            return None
        return self._sealed.get(key.id, plain)

    # -- grants --------------------------------------------------------------------------

    def get(self, key: GrantKey) -> Grant | None:
        return self._open(self.inner.get(key))

    def put(self, grant: Grant) -> Grant | None:
        return self._open(self.inner.put(self._seal(grant)))

    def add(self, grant: Grant) -> bool:
        return self.inner.add(self._seal(grant))

    def take_lease(
        self, key: GrantKey, stale_access_token: str, holder: str, until: float, now: float
    ) -> tuple[bool, Grant | None]:
        stored = self._stored_access(key, stale_access_token)
        if stored is None:
            return False, self.get(key)
        taken, grant = self.inner.take_lease(key, stored, holder, until, now)
        return taken, self._open(grant)

    def finish_refresh(self, key: GrantKey, stale_access_token: str, grant: Grant) -> bool:
        stored = self._stored_access(key, stale_access_token)
        sealed = self._seal(grant)
        if stored is None:
            # The stale token is gone: only "already holds these tokens" can hold.
            current = self.get(key)
            if current is None or current.access_token != grant.access_token:
                return False
            if grant.lease_holder is not None:
                self.inner.release_lease(key, grant.lease_holder)
            return True
        return self.inner.finish_refresh(key, stored, sealed)

    def release_lease(self, key: GrantKey, holder: str) -> None:
        self.inner.release_lease(key, holder)

    def end(self, key: GrantKey, access_token: str) -> bool:
        stored = self._stored_access(key, access_token)
        return stored is not None and self.inner.end(key, stored)

    def delete(self, key: GrantKey) -> Grant | None:
        return self._open(self.inner.delete(key))

    def grants(self, client_id: str) -> Iterator[Grant]:
        for grant in self.inner.grants(client_id):
            opened = self._open(grant)
            if opened is not None:
                yield opened

    # -- bindings, pending sign-ins, markers: nothing secret in them ---------------------

    def bind(self, key: GrantKey, now: float, ttl: float) -> str | None:
        return self.inner.bind(key, now, ttl)

    def resolve(self, binding_id: str, now: float, ttl: float) -> tuple[Binding, Grant] | None:
        found = self.inner.resolve(binding_id, now, ttl)
        if found is None:
            return None
        grant = self._open(found[1])
        return None if grant is None else (found[0], grant)

    def unbind(self, binding_id: str) -> None:
        self.inner.unbind(binding_id)

    def put_pending(self, state: str, record: dict[str, Any], expires_at: float) -> None:
        self.inner.put_pending(state, record, expires_at)

    def take_pending(self, state: str, now: float) -> dict[str, Any] | None:
        return self.inner.take_pending(state, now)

    def mark(self, name: str, expires_at: float) -> None:
        self.inner.mark(name, expires_at)

    def marked(self, name: str, now: float) -> bool:
        return self.inner.marked(name, now)

    def spend(
        self, bucket: str, limit: int, window: float, now: float, count: int = 1
    ) -> tuple[int, float]:
        return self.inner.spend(bucket, limit, window, now, count)

    def close(self) -> None:
        self.inner.close()
