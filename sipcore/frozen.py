"""Frozen dataclasses that construct as fast as mutable ones, for what is made per message.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(its own ``__setattr__`` refuses): about 5 µs for a record's 16 fields, and a fake SIP server
makes two records and one action per REGISTER, some 8 % of its time under load
(bench/registrar_rps.py). With ``slots=True`` every field is a member descriptor whose
``__set__`` writes the slot directly; :func:`fast_init` replaces the generated ``__init__`` by
one that calls those (1.7 µs), with the same keyword-only signature and defaults. The class
stays frozen: assignment after construction still raises ``FrozenInstanceError``. In sipcore
because the transports use it too (a :class:`~sipcore.transport.handler.Source` per datagram);
the fakes' records and actions import it from here.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import TypeVar

__all__ = ["fast_init"]

C = TypeVar("C", bound=type)


def fast_init(cls: C) -> C:
    """Give the frozen, slotted dataclass ``cls`` a direct ``__init__`` (same signature); returns ``cls``."""
    params, body, env = [], [], {}
    kinds = {f.kw_only for f in fields(cls) if f.init}
    if len(kinds) > 1:
        raise TypeError(f"fast_init({cls.__name__}): mixes keyword-only and positional fields")
    for i, f in enumerate(fields(cls)):
        if not f.init:
            continue
        if f.default_factory is not MISSING:
            raise TypeError(f"fast_init({cls.__name__}): field {f.name} has a default_factory")
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        descriptor = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__)
        env[f"_s{i}"] = descriptor.__set__
        body.append(f"    _s{i}(self, {f.name})")
    kw = "*, " if params and kinds == {True} else ""
    source = f"def __init__(self, {kw}{', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, env)  # noqa: S102 - the same technique dataclasses uses to build __init__
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls
