"""Reusable fakes, conformance suites and fault injection for the tests."""
