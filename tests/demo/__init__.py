"""The `make demo` script and its event generator."""
