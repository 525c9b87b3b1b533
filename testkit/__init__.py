"""Helpers the test suite and the benchmarks share: the local infrastructure (Kafka topics,
PostgreSQL databases migrated per service), synthetic data, and contract messages.

Test-only code: nothing under `services/` may import it (tests/architecture checks that), and
it is not part of the installed package.
"""
