"""The GC tuner freezes when sessions grew and unfreezes when they fell."""

from __future__ import annotations

import gc

from coordinator.clock import VirtualClock
from coordinator.ops.gc_tuning import GcTuner


def test_freezes_on_growth_and_unfreezes_on_shrink() -> None:
    sessions = [0]
    tuner = GcTuner(VirtualClock(), lambda: sessions[0])
    try:
        assert tuner.step() is None  # 0 sessions: nothing to freeze for
        sessions[0] = 500
        assert tuner.step() == "freeze" and gc.get_freeze_count() > 0
        sessions[0] = 550  # +10%: not enough growth
        assert tuner.step() is None
        sessions[0] = 200
        assert tuner.step() == "unfreeze" and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
