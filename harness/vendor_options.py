"""The yealink DUT's command-line options, and the DUT keywords they mean for the running test.

Why apart from :mod:`harness.vendor`: what the user types (``--phone-ip``, ``--sip-lab-file``,
``--firmware``, ...) and which phone of a farm a test drives are decisions of their own; the DUT
only takes the keywords. Options are registered through the plugin's namespaced group
(``--sip-phone-ip``, dest ``sipharness_phone_ip``) and read by destination only.
"""

from __future__ import annotations

import os
from typing import Any

from sipharness.phone.vendor_keys import Firmware

from .action_uri import AUTH_CHOICES
from .farm import current, farm_from, mac_of
from .vendor_errors import VendorLabProblem

__all__ = ["add_options", "farm_of", "dut_keywords"]


def add_options(group: Any) -> None:
    """The yealink DUT's options (``group.addoption`` registers ``--sip-NAME`` and the alias)."""
    group.addoption("--phone-ip", default=None, metavar="IP[:PORT][,...]|emulate",
                    help="yealink DUT: the phone's address (Action URI on port 80 unless :PORT; HTTPS is "
                         "followed); a list is a phone farm: the whole suite runs on each phone, one pytest-xdist "
                         "worker per phone (-n N --dist loadgroup); 'emulate' runs the bundled phone's vendor "
                         "emulation on loopback")
    group.addoption("--lab-file", default=None, metavar="FILE",
                    help="yealink DUT: a TOML file listing the lab's phones (name, address, model, firmware, "
                         "user, password_env), instead of --phone-ip (docs/lab.md)")
    group.addoption("--phone-user", default="admin", help="yealink DUT: the phone's web user (default admin)")
    group.addoption("--phone-password", default="admin",
                    help="yealink DUT: the phone's web password (default admin)")
    group.addoption("--phone-auth", default="auto", choices=AUTH_CHOICES,
                    help="yealink DUT: how the Action URI logs in: auto (HTTP Basic, then the login form "
                         "p=login&q=login&username=..&pwd=..; default), basic or login")
    group.addoption("--firmware", default="8x", choices=[f.value for f in Firmware],
                    help="yealink DUT: the phone's firmware generation, which decides the .cfg key names: 71 "
                         "(network.*, account.X.transport) or 8x (static.network.*, "
                         "account.X.sip_server.Y.transport_type; default)")
    group.addoption("--provision-port", type=int, default=0, metavar="PORT",
                    help="yealink DUT: port of the provisioning web server on --lab-address (default 0: any; "
                         "a real phone needs a fixed one; the N-th phone of a farm, from 0, uses PORT + N)")
    group.addoption("--provision-timeout", type=float, default=20.0, metavar="S",
                    help="yealink DUT: wall seconds the phone has to fetch its .cfg after key=AutoP (default 20)")
    group.addoption("--reboot-timeout", type=float, default=None, metavar="S",
                    help="yealink DUT: wall seconds a phone may take to reboot and report setup_autop_finish "
                         "(default 180; 20 for the emulation)")
    group.addoption("--emulate-fault", action="append", default=[], metavar="NAME",
                    help="yealink DUT with --phone-ip emulate: set the emulated phone up badly on purpose "
                         "(repeatable; phone.emulation.Fault: ignore-dns, dhcp-dns, dns-cache, "
                         "remote-control-prompt, refuse-ca, no-setup-events, never-fetch, dead-control, "
                         "never-register), to see the lab preflight name the fix")
    group.addoption("--emulate-firmware", default=None, choices=[f.value for f in Firmware],
                    help="yealink DUT with --phone-ip emulate: the emulated phone's firmware generation "
                         "(default: --firmware); another one than --firmware shows what a wrong --firmware does")


def farm_of(options: Any) -> list:
    """The lab's phones from ``--phone-ip`` / ``--sip-lab-file`` (none given: no farm)."""
    if not options("sipharness_phone_ip") and not options("sipharness_lab_file"):
        return []
    return farm_from(options("sipharness_phone_ip"), options("sipharness_lab_file"))


def dut_keywords(options: Any, pki: Any = None) -> dict[str, Any]:
    """:class:`harness.vendor.VendorPhone`'s keywords for the running test: the phone of its item (a farm), the
    options, and the lab's CA (``pki``)."""
    farm = farm_from(options("sipharness_phone_ip"), options("sipharness_lab_file"))
    phone = current(farm)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = phone.index
    if len(farm) == 1 and worker.startswith("gw") and worker[2:].isdigit():
        if not phone.emulate and int(worker[2:]) > 0:
            raise VendorLabProblem(f"pytest-xdist worker {worker} has no phone of its own: --phone-ip lists one "
                                   f"({phone.address})", "run one phone without -n, or list one phone per worker")
        index = int(worker[2:])  # a lone "emulate": each worker powers on an emulated phone of its own
    faults = list(options("sipharness_emulate_fault") or ())
    if (faults or options("sipharness_emulate_firmware")) and not phone.emulate:
        raise VendorLabProblem(f"--emulate-fault/--emulate-firmware with --phone-ip {phone.address}",
                               "they are for the emulated phone only (--phone-ip emulate)")
    args = tuple(a for f in faults for a in ("--emulate-fault", f))
    firmware = phone.firmware or options("sipharness_firmware")
    if options("sipharness_emulate_firmware"):
        args += ("--firmware", options("sipharness_emulate_firmware"))
    port = phone.provision_port or options("sipharness_provision_port")
    return dict(phone=phone.address, name=phone.name,
                user=phone.user or options("sipharness_phone_user"),
                password=phone.password if phone.password is not None else options("sipharness_phone_password"),
                lab_address=options("sipharness_lab_address").split(",")[0].strip(),
                provision_port=port + index if port else 0,
                provision_timeout=options("sipharness_provision_timeout"),
                reboot_timeout=options("sipharness_reboot_timeout"),
                ca_pem=pki.ca_pem if pki is not None else None, mac=mac_of(index), firmware=firmware,
                auth=options("sipharness_phone_auth"), emulation_args=args, keep=True)
