"""roomtone.concurrency.map_two: the calling thread and one worker share a list of items."""

import threading
import time

import pytest

from roomtone.concurrency import map_two


def test_results_keep_the_items_order_and_both_threads_work():
    seen = set()

    def slow_square(v):
        seen.add(threading.current_thread().name)
        time.sleep(0.01)
        return v * v

    assert map_two(slow_square, range(12)) == [v * v for v in range(12)]
    assert len(seen) == 2


def test_short_lists_run_in_the_calling_thread():
    names = []
    assert map_two(lambda v: names.append(threading.current_thread().name) or v, [5]) == [5]
    assert map_two(lambda v: v, []) == []
    assert names == [threading.current_thread().name]


def test_the_first_error_is_raised_after_both_threads_stop():
    done = []

    def work(v):
        if v == 3:
            raise ValueError("item 3")
        time.sleep(0.005)
        done.append(v)
        return v

    with pytest.raises(ValueError, match="item 3"):
        map_two(work, range(40))
    settled = len(done)
    time.sleep(0.05)
    assert len(done) == settled < 40  # nothing still running, and the rest was not started
