"""A local HTTP server that answers like a BigCommerce store, for the demo and the tests."""
from tap_bigcommerce.sandbox.server import Change, Sandbox, SandboxOptions

__all__ = ["Change", "Sandbox", "SandboxOptions"]
