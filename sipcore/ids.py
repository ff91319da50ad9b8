"""Fresh identifiers for requests and dialogs: Via branches (with RFC 3261's magic cookie),
tags and Call-IDs, from a pool of ``os.urandom`` digits.

Why a module of its own: the magic cookie has one home here, read by :func:`new_branch`,
the transaction layer's key matching (RFC 3261 §17.2.3: a branch that starts with it is
unique) and the fake proxy's branches; the random pool serves everything that needs
unguessable digits (the digest server's nonces too); none of them needs the message classes.
"""

from __future__ import annotations

import os
import threading

__all__ = ["MAGIC_COOKIE", "new_branch", "new_tag", "new_call_id"]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: a branch that starts with it is unique (RFC 3261 rules)


# Tags, branches and Call-IDs come from one pool of os.urandom hex digits (what
# secrets.token_hex returns), refilled 1 KiB at a time: one getrandom() call per ~85 tags
# instead of one each (a registrar under load makes a tag per response). A forked child
# starts with an empty pool, so parent and child never hand out the same digits.
_POOL_BYTES = 1024
_pool = ""
_pool_at = 0
_pool_lock = threading.Lock()


def _random_hex(n: int) -> str:
    global _pool, _pool_at
    with _pool_lock:
        end = _pool_at + n
        if end > len(_pool):
            _pool = os.urandom(max(_POOL_BYTES, n)).hex()
            _pool_at, end = 0, n
        start, _pool_at = _pool_at, end
        return _pool[start:end]


def _empty_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = "", 0


os.register_at_fork(after_in_child=_empty_pool)


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 80 random bits)."""
    return MAGIC_COOKIE + _random_hex(20)


def new_tag() -> str:
    """A fresh tag: 48 random bits (RFC 3261 §19.3: at least 32, cryptographically random)."""
    return _random_hex(12)


def new_call_id(host: str) -> str:
    return f"{_random_hex(24)}@{host}"
