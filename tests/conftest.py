from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "asan": the native suite again under AddressSanitizer (make asan), where each call is ~10x slower.
settings.register_profile("default", deadline=None)
settings.register_profile(
    "asan", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
