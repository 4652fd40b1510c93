"""Expiring signed URLs for images, so an <img> tag can load a cut-out without a header.

The signature covers the path, the owner and the expiry; a leaked URL works for at
most WARDROBE_SIGNED_URL_TTL seconds and only for that one image.
"""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid


def sign(key: bytes, path: str, user_id: uuid.UUID, expires: int) -> str:
    msg = f"{path}\n{user_id}\n{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


class Signer:
    """path -> `path?expires=...&sig=...`, valid `ttl` seconds from the Signer's making, for one
    user. A page of items signs two URLs each: the key's HMAC state, the user id's text and the
    expiry are worked out once, not per URL (the signature is sign()'s)."""

    def __init__(self, key: bytes, user_id: uuid.UUID, ttl: int):
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._expires = int(time.time()) + ttl
        self._tail = f"\n{user_id}\n{self._expires}".encode()

    def __call__(self, path: str) -> str:
        mac = self._mac.copy()
        mac.update(path.encode() + self._tail)
        return f"{path}?expires={self._expires}&sig={mac.hexdigest()[:32]}"


def verify(key: bytes, path: str, user_id: uuid.UUID, expires: str | None, sig: str | None) -> bool:
    if not expires or not sig:
        return False
    try:
        exp = int(expires)
    except ValueError:
        return False
    if exp < time.time():
        return False
    return hmac.compare_digest(sign(key, path, user_id, exp), sig)
