"""geogan.runtime.frozen_gc: the process's objects sit out garbage collection exactly while renders run."""

from __future__ import annotations

import gc
import threading

from geogan.runtime import frozen_gc


def test_frozen_while_any_render_runs_then_given_back():
    assert gc.get_freeze_count() == 0
    with frozen_gc():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the imported modules' objects
        with frozen_gc():  # a nested render (the notebook path renders through render())
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen  # the outer render still runs
    assert gc.get_freeze_count() == 0


def test_the_last_of_concurrent_renders_unfreezes():
    inside, release, seen = threading.Barrier(3), threading.Event(), []

    def render_like():
        with frozen_gc():
            inside.wait()
            release.wait()
        seen.append(gc.get_freeze_count())

    workers = [threading.Thread(target=render_like) for _ in range(2)]
    with frozen_gc():
        [w.start() for w in workers]
        inside.wait()
        release.set()
        [w.join() for w in workers]
        assert seen == [gc.get_freeze_count()] * 2 and seen[0] > 0  # still frozen: this block runs
    assert gc.get_freeze_count() == 0


def test_an_error_inside_still_unfreezes():
    try:
        with frozen_gc():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.get_freeze_count() == 0


def test_render_runs_with_the_heap_frozen(tmp_path):
    """The API's render holds it (checked from inside the render: the progress callback)."""
    import geogan
    counts = []
    res = geogan.render(out_dir=tmp_path, gsd_m=4.0, model="fast", progress=lambda f, m: counts.append(gc.get_freeze_count()))
    assert res.aerial.exists()
    assert counts and min(counts) > 1000
    assert gc.get_freeze_count() == 0
