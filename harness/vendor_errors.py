"""The vendor driver's errors: a step that failed, and a step that failed because of the lab.

One module so that the driver's parts (the Action URI client, the phone's session, the DUT)
raise the same two kinds without importing each other: a :class:`VendorError` is a harness
error (SPEC §10), a :class:`VendorLabProblem` a lab problem whose ``fix`` says what to set.
"""

from __future__ import annotations

from .report import HarnessError, LabProblem

__all__ = ["VendorError", "VendorLabProblem"]


class VendorError(HarnessError):
    """A step of driving the vendor phone failed; the message names the step (a harness error)."""


class VendorLabProblem(VendorError, LabProblem):
    """A step failed because of the lab (address, credentials, allow list, provisioning URL): ``fix`` says what to do."""
