"""Fixtures more than one unit-test module uses, defined beside the tests that grew them."""

from tests.unit.test_handlers import stack  # noqa: F401 (each handler under moto with its function's environment)
from tests.unit.test_services import world  # noqa: F401 (the use cases: the real Ledger on moto, fakes for the rest)
