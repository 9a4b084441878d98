"""Copies of the generated message stubs (``scripts/gen_proto.sh``); never edit them by hand.

``client/setup.py`` copies them at build time; tests/client/test_packaging.py checks they match.
"""
