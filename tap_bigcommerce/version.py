"""The tap's version, read by setup.py and by --version."""
__version__ = "0.1.0"
