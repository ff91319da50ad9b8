"""Project-wide pytest configuration.

Only the things every test directory shares live here; the fixtures users see are in
``harness.plugin`` (loaded through the ``pytest11`` entry point).
"""
