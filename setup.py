"""Packaging for tap-bigcommerce: a Singer tap for BigCommerce, with a local sandbox store."""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = {}
exec((HERE / "tap_bigcommerce" / "version.py").read_text(), VERSION)

setup(
    name="tap-bigcommerce",
    version=VERSION["__version__"],
    description="Singer tap for BigCommerce: coupons, customers, orders and products, losing nothing",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=["tap_bigcommerce", "tap_bigcommerce.sandbox", "tap_bigcommerce.schemas"],
    # The schemas live at the top-level schemas/ folder (the design card asks for it) and are
    # installed as the tap_bigcommerce.schemas package, so a non-editable install finds them.
    package_dir={"tap_bigcommerce.schemas": "schemas"},
    package_data={"tap_bigcommerce.schemas": ["*.json"]},
    install_requires=[
        "singer-python>=6.0,<7",
        "requests>=2.28,<3",
        "backoff>=2.2,<3",
        "orjson>=3.9,<4",
    ],
    extras_require={
        "test": ["pytest>=7", "responses>=0.23"],
    },
    entry_points={
        "console_scripts": [
            "tap-bigcommerce=tap_bigcommerce.cli:run",
            "tap-bigcommerce-sandbox=tap_bigcommerce.sandbox.__main__:main",
        ],
    },
)
