"""The pytest plugin (entry point ``pytest11``): fixtures that wire the fakes to a device under test.

Thin by design, like pytest-httpserver's: the cores (``fakes``, ``phone``) know nothing of
pytest; this module only turns them into fixtures and options.
"""
