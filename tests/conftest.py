"""Shared helpers of the project's own tests.

Real peers (dig, sipp, kamailio, baresip, dnsperf) are external programs. A test that needs
one asks :func:`peer`: absent, the test is skipped with the reason, unless
``SIPHARNESS_REQUIRE_PEERS=1`` (set by ``.ci/run``), where an absent peer is a failure.
"""

import os
import shutil

import pytest


def require_peer(program: str) -> str:
    """Path of ``program``; skip (or fail under SIPHARNESS_REQUIRE_PEERS=1) when absent."""
    path = shutil.which(program)
    if path:
        return path
    reason = f"real peer {program!r} is not installed (see .ci/run for the apt-get line)"
    if os.environ.get("SIPHARNESS_REQUIRE_PEERS") == "1":
        pytest.fail(reason + "; SIPHARNESS_REQUIRE_PEERS=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def peer():
    """``peer("dig")`` → path of the program, skipping/failing as :func:`require_peer` says."""
    return require_peer
