"""sip-redundancy-harness: tells a lab, with evidence, whether a SIP phone survives the loss of its servers.

The repository keeps one folder per role at its top (``sipcore/``, ``fakes/``, ``phone/``,
``harness/``); installed, they live under this package (``sipharness.fakes``, ...) so that a
user's own ``phone.py`` or ``harness/`` never collides with ours (``setup.cfg`` maps the
folders with ``package_dir``).
"""

__version__ = "0.2.0"
