"""A phone farm: the phones of a lab, each of which runs the whole suite (``--phone-ip A,B,C`` or a lab file).

Why: qualifying a phone model means every phone of the lab runs every test, not a share of
them. The plugin (:mod:`harness.plugin_farm`) parametrizes each test that drives a DUT once per
phone (its id is the phone's name), groups the items of one phone for pytest-xdist
(``--dist loadgroup``, one worker per phone), and reports per phone; the DUT of each test
drives the phone of its item (:func:`current`). This module is the farm's data and its one
source of truth, no pytest here: the phones from ``--phone-ip`` or from a lab file, their names,
and each phone's own provisioning port (``--provision-port P``: the N-th phone, from 0, is served
on P + N, so its provisioning URL is set once and stays right whichever worker drives it).

Lab file (TOML, ``--sip-lab-file FILE``)::

    [lab]
    provision_port = 8080          # optional: as --provision-port
    firmware = "8x"                # optional: as --firmware, for every phone

    [[phone]]
    name = "desk-1"                # optional (default phone1, phone2, ...): the test id and the report's heading
    address = "192.168.50.21"      # IP[:PORT] of its web server, or "emulate"
    model = "T46U"                 # optional: shown in the report
    firmware = "8x"                # optional: this phone's key generation
    user = "admin"                 # optional: its web login (default --phone-user)
    password_env = "DESK1_PW"      # optional: the environment variable holding its password (never the file)

An error names the file and what is wrong (a TOML error its line and column).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass

from .vendor_errors import VendorLabProblem

__all__ = ["FarmPhone", "farm_from", "load_lab_file", "current", "set_current", "named", "EMULATE", "mac_of", "PARAM"]

EMULATE = "emulate"
PARAM = "sip_farm_phone"  # the parameter each test of a farm gets (its value: the phone's name)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}")
_PHONE_KEYS = {"name", "address", "model", "firmware", "user", "password_env"}
_LAB_KEYS = {"provision_port", "firmware"}


@dataclass(frozen=True)
class FarmPhone:
    """One phone of the lab."""

    name: str
    address: str  # IP[:PORT] of its web server, or "emulate"
    index: int  # 0-based, its order in the farm (its provisioning port offset, its MAC when emulated)
    model: str = ""
    firmware: str | None = None
    user: str | None = None
    password: str | None = None
    provision_port: int | None = None  # the lab file's base port (before the index is added)

    @property
    def emulate(self) -> bool:
        return self.address == EMULATE

    def label(self) -> str:
        return f"{self.name} ({self.address}{', ' + self.model if self.model else ''})"


def mac_of(index: int) -> str:
    """The emulated phone's MAC (the vendor's OUI 00:15:65, then the farm index from 1)."""
    return f"001565{index + 1:06x}"


def farm_from(phone_ip: str | None, lab_file: str | None = None) -> list[FarmPhone]:
    """The farm: the lab file's phones, else ``--phone-ip A,B,C`` (named phone1, phone2, ...)."""
    if lab_file:
        return load_lab_file(lab_file)
    addresses = [p.strip() for p in (phone_ip or "").split(",") if p.strip()]
    if not addresses:
        raise VendorLabProblem("--dut yealink has no phone",
                               "give --phone-ip IP[:PORT][,IP...] (or --phone-ip emulate), or --sip-lab-file FILE")
    return [FarmPhone(name=f"phone{i + 1}", address=a, index=i) for i, a in enumerate(addresses)]


def load_lab_file(path: str) -> list[FarmPhone]:
    """The phones of a lab file (see the module docstring); VendorLabProblem naming the file if it is wrong."""
    def bad(what: str) -> VendorLabProblem:
        return VendorLabProblem(f"lab file {path}: {what}", "see docs/lab.md, 'Phone farm', for the format")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise bad(e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise bad(str(e)) from None
    lab = data.get("lab", {})
    if not isinstance(lab, dict) or set(lab) - _LAB_KEYS:
        raise bad(f"[lab] takes {', '.join(sorted(_LAB_KEYS))}; got {', '.join(sorted(set(lab) - _LAB_KEYS))}")
    extra = set(data) - {"lab", "phone"}
    if extra:
        raise bad(f"unknown table(s) {', '.join(sorted(extra))}: expected [lab] and [[phone]]")
    phones = data.get("phone")
    if not isinstance(phones, list) or not phones:
        raise bad("no [[phone]] table: list at least one phone")
    out: list[FarmPhone] = []
    for i, p in enumerate(phones):
        where = f"[[phone]] #{i + 1}"
        if not isinstance(p, dict):
            raise bad(f"{where} is not a table")
        unknown = set(p) - _PHONE_KEYS
        if unknown:
            raise bad(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_PHONE_KEYS))})")
        address = p.get("address")
        if not isinstance(address, str) or not address.strip():
            raise bad(f"{where}: 'address' is required (IP[:PORT] of the phone's web server, or \"emulate\")")
        name = p.get("name", f"phone{i + 1}")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise bad(f"{where}: name {name!r} must be 1-41 letters, digits, '_', '.', ':' or '-'")
        if name in {o.name for o in out}:
            raise bad(f"{where}: name {name!r} is used twice")
        firmware = p.get("firmware", lab.get("firmware"))
        if firmware is not None and firmware not in ("71", "8x"):
            raise bad(f"{where}: firmware {firmware!r}: expected \"71\" or \"8x\"")
        password = None
        if "password_env" in p:
            password = os.environ.get(str(p["password_env"]))
            if password is None:
                raise bad(f"{where}: the environment variable {p['password_env']} (password_env) is not set")
        port = lab.get("provision_port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise bad(f"[lab] provision_port {port!r}: expected a port number")
        out.append(FarmPhone(name=name, address=address.strip(), index=i, model=str(p.get("model", "")),
                             firmware=firmware, user=p.get("user"), password=password, provision_port=port))
    return out


_CURRENT: FarmPhone | None = None


def current(farm: list[FarmPhone]) -> FarmPhone:
    """The phone the running test drives: the one its item was parametrized with, else the farm's only one."""
    if _CURRENT is not None and any(p.name == _CURRENT.name for p in farm):
        return next(p for p in farm if p.name == _CURRENT.name)
    if len(farm) == 1:
        return farm[0]
    raise VendorLabProblem(f"phone farm of {len(farm)} phones ({', '.join(p.name for p in farm)}) but this test was "
                           f"not given one", "run the farm through the sipharness plugin (each test is run once "
                                             "per phone)")


def set_current(phone: FarmPhone | None) -> None:
    """Set by the plugin before each test's fixtures (the item's phone)."""
    global _CURRENT
    _CURRENT = phone


def named(farm: list[FarmPhone], name: str) -> FarmPhone:
    return next(p for p in farm if p.name == name)

