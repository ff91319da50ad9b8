"""``sipharness``: one subcommand per role (a fake, the bundled phone).

Each role owns its own argument parser in its package (``fakes.dns.cli``, ``fakes.sip.cli``,
``phone.daemon``); this module only dispatches, importing the role lazily so that
``sipharness dns`` does not load the phone, and answers ``--version`` for all of them.

Every role's stdout is JSON lines with one time base: ``t`` is seconds since the process
started (the phone's phone time; ``sipharness phone --clock real@EPOCH`` moves its zero).
"""

from __future__ import annotations

import importlib
import sys

_ROLES = {
    "dns": ("sipharness.fakes.dns.cli", "fake authoritative DNS server"),
    "registrar": ("sipharness.fakes.sip.cli", "PBX-like fake SIP server (registrar, proxy, UAS)"),
    "phone": ("sipharness.phone.daemon", "the bundled phone, from a .cfg, events as JSON lines"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"] or (argv[:1] and argv[0] in _ROLES and "--version" in argv[1:]):
        from sipharness import __version__

        role = f" {argv[0]}" if argv[0] in _ROLES else ""
        print(f"sipharness{role} {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _ROLES:
        out = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        print("usage: sipharness ROLE [options]   (sipharness ROLE --help for a role's options; --version)\n\n"
              "Every role prints one JSON object per stdout line; \"t\" is seconds since the process started.\n\n"
              "roles:", file=out)
        for name, (_, text) in _ROLES.items():
            print(f"  {name:<10} {text}", file=out)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nsipharness: unknown role {argv[0]!r}", file=out)
        return 0 if out is sys.stdout else 2
    module = importlib.import_module(_ROLES[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
