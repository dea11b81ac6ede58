"""The progress clock behind the progress lines of long scoring and publish steps."""

from __future__ import annotations

from fabric.progress import ProgressClock


def test_due_at_most_once_per_interval() -> None:
    now = [100.0]
    clock = ProgressClock(every=10.0, clock=lambda: now[0])
    seen = []
    for t in (100.0, 105.0, 109.9, 110.0, 111.0, 119.9, 120.5, 160.0):
        now[0] = t
        seen.append(clock.due())
    # due 10 s after the start, then 10 s after each line; a long gap gives one line, not four
    assert seen == [False, False, False, True, False, False, True, True]
