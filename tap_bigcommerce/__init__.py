"""tap-bigcommerce: a Singer tap that copies a BigCommerce store into any Singer target."""
from tap_bigcommerce.version import __version__

__all__ = ["__version__"]
