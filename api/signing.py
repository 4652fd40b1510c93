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


def signed_url(key: bytes, path: str, user_id: uuid.UUID, ttl: int) -> str:
    expires = int(time.time()) + ttl
    return f"{path}?expires={expires}&sig={sign(key, path, user_id, expires)}"


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
