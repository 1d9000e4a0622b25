"""The ``engine`` fixture of the object tests (volume import/export reads and writes objects)."""

from tests.unit.objects.conftest import engine

__all__ = ["engine"]
