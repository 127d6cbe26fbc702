"""HTTP basic authentication against bcrypt hashes, with a cache that keeps scrapes cheap.

bcrypt is slow on purpose (about 50 ms at cost 10): paying it on every scrape of every
Prometheus replica would be a CPU tax and a denial-of-service lever. So a check's result is
remembered under an HMAC-SHA256 digest of (user, stored hash, password) keyed by a secret drawn
at start: the cache never holds a password, an entry vouches only for that exact triple (a new
hash in a reloaded file misses it), and a bounded LRU keeps a flood of wrong passwords from
growing it. A cache miss runs bcrypt off the event loop, one at a time (as exporter-toolkit),
and an unknown user is checked against a decoy hash so that timing does not tell which user
names exist. bcrypt compares in constant time.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from functools import cache

import bcrypt

#: Remembered results; the oldest is dropped beyond this.
CACHE_SIZE = 1024

REALM = "gpu-inference-exporter"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """(user, password bytes) from an `Authorization: Basic ...` header; None when absent or
    malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(encoded.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password


class BasicAuthenticator:
    """Checks credentials against a user → bcrypt hash table, remembering results."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size
        self._bcrypt_lock = asyncio.Lock()
        self.bcrypt_checks = 0  # how many times bcrypt actually ran (tests, benchmarks)

    async def check(self, users: Mapping[str, bytes], user: str, password: bytes) -> bool:
        """True when `user` is in `users` and `password` matches its hash."""
        stored = users.get(user)
        hashed = stored if stored is not None else _decoy_hash()
        key = self._digest(user, hashed, password)
        result = self._cached(key)
        if result is None:
            async with self._bcrypt_lock:
                result = self._cached(key)  # another request may have checked it meanwhile
                if result is None:
                    result = await asyncio.to_thread(_checkpw, password, hashed)
                    self.bcrypt_checks += 1
                    self._remember(key, result)
        return result and stored is not None

    def _digest(self, user: str, hashed: bytes, password: bytes) -> bytes:
        message = b"\0".join((user.encode("utf-8", "surrogateescape"), hashed, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _cached(self, key: bytes) -> bool | None:
        result = self._cache.get(key)
        if result is not None:
            self._cache.move_to_end(key)
        return result

    def _remember(self, key: bytes, result: bool) -> None:
        self._cache[key] = result
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


@cache
def _decoy_hash() -> bytes:
    """A bcrypt hash (cost 10) of a random password nobody knows, checked for unknown users."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(10))


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # bcrypt refuses a password with a NUL byte, or over 72 bytes
        return False
