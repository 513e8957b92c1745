"""Compatibility name for launch/bench.py's `from mpcrt.cli import add_device_argument`.

The command line is mpcrt.launch.cli; add_device_argument lives in mpcrt.config. Delete
this module once bench.py imports it from there.
"""
from mpcrt.config import add_device_argument  # noqa: F401
