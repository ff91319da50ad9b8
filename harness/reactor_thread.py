"""A Twisted reactor of its own in a background thread, so any test style can use the fakes.

Why: in a Twisted-coroutine test the fakes share the test's reactor, and the test awaits. A
plain test that blocks (dnspython's sync resolver, a socket with a timeout) or an asyncio test
(pytest-asyncio) never gives that reactor a turn, so the fakes would never answer. As
pytest-httpserver runs its server in a thread, :class:`ReactorThread` runs a second reactor
instance (never installed as ``twisted.internet.reactor``: pytest-twisted keeps that one) in a
daemon thread; the fakes take it as their injected ``reactor`` and a real or scaled clock on it.

Calls from the test's thread reach the fakes only through :meth:`ReactorThread.call` (what
Twisted's ``blockingCallFromThread`` does, with a deadline): a :class:`Marshalled` proxy turns
each attribute read and method call into one, waits for a Deferred result in the reactor
thread, and hands back plain data as it is and any other object as another proxy. A call that
gets no answer within its deadline raises :class:`ReactorCallTimeout` naming the call.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import threading
from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure

__all__ = ["ReactorThread", "ReactorCallTimeout", "Marshalled", "new_reactor"]

#: wall seconds a call into the reactor thread may take, on top of a ``timeout=`` argument it carries
CALL_DEADLINE = 10.0
_PLAIN = (type(None), bool, int, float, complex, str, bytes, enum.Enum)


class ReactorCallTimeout(TimeoutError):
    """The reactor thread did not answer a call within its deadline."""


def new_reactor() -> Any:
    """A new reactor instance, not installed (epoll where there is one, else poll, else select)."""
    for module, name in (("epollreactor", "EPollReactor"), ("pollreactor", "PollReactor"),
                         ("selectreactor", "SelectReactor")):
        try:
            mod = __import__(f"twisted.internet.{module}", fromlist=[name])
            return getattr(mod, name)()
        except (ImportError, AttributeError, OSError):
            continue
    raise RuntimeError("no Twisted reactor can be made on this platform")


class ReactorThread:
    """A reactor running in a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "sipharness-reactor"):
        self.reactor = new_reactor()
        # the global "I/O thread" of Twisted stays the test's reactor's (pytest-twisted's)
        self.reactor._registerAsIOThread = False
        self._running = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.crashed: BaseException | None = None

    def start(self, timeout: float = CALL_DEADLINE) -> "ReactorThread":
        self.reactor.callWhenRunning(self._running.set)
        self._thread.start()
        if not self._running.wait(timeout):
            raise ReactorCallTimeout(f"the fakes' reactor thread did not start within {timeout:g} s"
                                     + (f": {self.crashed!r}" if self.crashed else ""))
        return self

    def _run(self) -> None:
        try:
            self.reactor.run(installSignalHandlers=False)
        except BaseException as e:  # noqa: BLE001 - kept for the caller's message
            self.crashed = e
            raise

    @property
    def in_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[..., Any], *args: Any, deadline: float = CALL_DEADLINE, what: str = "",
             **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in the reactor thread and return its result (a Deferred's, once fired).

        Its exception is raised here, with its traceback. Past ``deadline`` wall seconds the call
        is cancelled (a Deferred still pending gets ``cancel()``) and :class:`ReactorCallTimeout` raised."""
        if self.in_thread:
            raise RuntimeError(f"{what or fn!r}: ReactorThread.call from the reactor thread itself would deadlock")
        if not self._thread.is_alive():
            raise RuntimeError(f"{what or fn!r}: the fakes' reactor thread is not running"
                               + (f" (it died: {self.crashed!r})" if self.crashed else ""))
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            d = defer.maybeDeferred(fn, *args, **kwargs)
            box["deferred"] = d

            def finish(result: Any) -> None:
                box["result"] = result
                done.set()

            d.addBoth(finish)

        self.reactor.callFromThread(run)
        if not done.wait(deadline):
            self.reactor.callFromThread(lambda: box["deferred"].cancel() if "deferred" in box else None)
            raise ReactorCallTimeout(f"{what or getattr(fn, '__qualname__', fn)}: no answer from the fakes' reactor "
                                     f"thread within {deadline:g} s")
        result = box["result"]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def stop(self, timeout: float = CALL_DEADLINE) -> None:
        if self._thread.is_alive():
            self.reactor.callFromThread(self.reactor.stop)
            self._thread.join(timeout)


def _is_plain(value: Any) -> bool:
    """Data a test may hold in its own thread: immutable values and frozen dataclasses (a Record)."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (tuple, list, frozenset, set)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return dataclasses.is_dataclass(value) and not isinstance(value, type) and value.__dataclass_params__.frozen


def _deadline_of(fn: Callable[..., Any], args: tuple, kwargs: dict) -> float:
    """A call's deadline: CALL_DEADLINE plus the ``timeout`` it carries (seconds of the fake's clock)."""
    timeout = kwargs.get("timeout")
    if timeout is None:
        try:
            timeout = inspect.signature(fn).bind_partial(*args, **kwargs).arguments.get("timeout")
        except (TypeError, ValueError):
            timeout = None
    return CALL_DEADLINE + (float(timeout) if isinstance(timeout, (int, float)) else 0.0)


class Marshalled:
    """An object living in a :class:`ReactorThread`, used from another thread.

    Attribute reads, method calls, ``len``, iteration and indexing run in the reactor thread;
    plain results come back as they are, other objects as proxies."""

    __slots__ = ("_sip_target", "_sip_thread")

    def __init__(self, target: Any, thread: ReactorThread):
        object.__setattr__(self, "_sip_target", target)
        object.__setattr__(self, "_sip_thread", thread)

    def _sip_wrap(self, value: Any) -> Any:
        if _is_plain(value):
            return value
        if isinstance(value, list):
            return [self._sip_wrap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._sip_wrap(v) for v in value)
        return Marshalled(value, self._sip_thread)

    def __getattr__(self, name: str) -> Any:
        target, thread = self._sip_target, self._sip_thread
        what = f"{type(target).__name__}.{name}"
        value = thread.call(getattr, target, name, what=what)
        if callable(value) and not isinstance(value, type):
            def method(*args: Any, **kwargs: Any) -> Any:
                result = thread.call(value, *args, deadline=_deadline_of(value, args, kwargs), what=what, **kwargs)
                return self._sip_wrap(result)

            method.__name__ = name
            method.__doc__ = getattr(value, "__doc__", None)
            return method
        return self._sip_wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        self._sip_thread.call(setattr, self._sip_target, name, value,
                              what=f"{type(self._sip_target).__name__}.{name} = ...")

    def __len__(self) -> int:
        return self._sip_thread.call(len, self._sip_target, what=f"len({type(self._sip_target).__name__})")

    def __iter__(self):
        return iter(self._sip_wrap(self._sip_thread.call(list, self._sip_target,
                                                         what=f"list({type(self._sip_target).__name__})")))

    def __getitem__(self, key: Any) -> Any:
        return self._sip_wrap(self._sip_thread.call(lambda: self._sip_target[key],
                                                    what=f"{type(self._sip_target).__name__}[{key!r}]"))

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<{type(self._sip_target).__name__} in the fakes' reactor thread>"
