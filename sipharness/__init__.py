"""sip-redundancy-harness: tells a lab, with evidence, whether a SIP phone survives the loss of its servers.

The repository keeps one folder per role at its top (``sipcore/``, ``fakes/``, ``phone/``,
``harness/``); installed, they live under this package (``sipharness.fakes``, ...) so that a
user's own ``phone.py`` or ``harness/`` never collides with ours (``setup.cfg`` maps the
folders with ``package_dir``).

In a checkout the role folders sit beside this one, and the checkout's parent folder is added
to this package's ``__path__`` (as ``pkgutil.extend_path`` does for split packages): so
``PYTHONPATH=. python3 -m pytest`` in any checkout or git worktree runs *that* checkout's code,
whichever checkout was ``pip install -e``-ed.
"""

import os as _os

__version__ = "0.2.0"

_top = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_top, "setup.cfg")) and _os.path.isfile(_os.path.join(_top, "phone", "__init__.py")):
    __path__.append(_top)  # noqa: F821 - a package's own __path__
