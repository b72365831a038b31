"""Tests of the billing-events command line, against the in-process mock server."""
