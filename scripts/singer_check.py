"""singer-check-tap with one bug fixed; run it with the singer-tools venv's Python.

    tap-bigcommerce --config config.json --catalog catalog.json | .venvs/singer-tools/bin/python scripts/singer_check.py

singer-tools 0.4.1 re-checks every "date-time" property with strict_rfc3339 inside its own
`properties` validator, and calls `instance.get(...)` there without asking whether the instance is
an object. A nullable object that is null but declares a date-time inside (products.primary_image
is null for a product without images) then crashes it with
"AttributeError: 'NoneType' object has no attribute 'get'". This wrapper runs the same check,
skipping that extra parse for non-objects only; every other rule of singer-check-tap is unchanged,
and jsonschema's own "date-time" format check (strict-rfc3339) still applies everywhere.
"""
import sys
from datetime import datetime

from jsonschema import validators
from singertools import check_tap
from strict_rfc3339 import rfc3339_to_timestamp


def extend_with_default(validator_class):
    """check_tap.extend_with_default, guarded so that a null object is not parsed as a dict."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties_with_dates(validator, properties, instance, schema):
        yield from validate_properties(validator, properties, instance, schema)
        if not isinstance(instance, dict):
            return
        for prop, subschema in properties.items():
            if subschema.get("format") == "date-time" and instance.get(prop) is not None:
                try:
                    datetime.utcfromtimestamp(rfc3339_to_timestamp(instance[prop]))
                except Exception:
                    raise Exception(f"Error parsing property {prop}, value {instance[prop]}") from None

    return validators.extend(validator_class, {"properties": properties_with_dates})


def main():
    """Run singer-check-tap's main() with the guarded validator."""
    check_tap.extend_with_default = extend_with_default
    return check_tap.main()


if __name__ == "__main__":
    sys.exit(main())
