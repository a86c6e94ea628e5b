"""python -m tap_bigcommerce: the same as the tap-bigcommerce command."""
from tap_bigcommerce.cli import run

run()
