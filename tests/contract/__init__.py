"""Contract tests: schemathesis runs of the specs, the generated clients against the mock, and the mock's behaviour."""
