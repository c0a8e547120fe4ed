"""omnigent/env/watcher.py overrides watchdog's private `InotifyFD._check_inotify_fd`;
this fails if a watchdog release renames it or stops calling it before a read."""

from __future__ import annotations

import os
import threading
import time

from watchdog.observers.inotify_c import InotifyFD

from omnigent.env.watcher import WATCH_MASK, Watcher


def test_the_private_hook_is_still_there():
    assert callable(getattr(InotifyFD, "_check_inotify_fd", None))


def test_busy_while_events_are_handled_and_idle_after(tmp_path):
    handled: list[str] = []
    gate = threading.Event()

    class Handler:  # what the tracker is to the watcher
        def on_event(self, event):
            gate.wait(5)
            handled.append(os.fsdecode(event.name))

        def on_watch_deleted(self, wd):
            pass

        def on_queue_overflow(self):
            pass

    w = Watcher()
    w.start()
    w.add_callback(os.fsencode(str(tmp_path)), WATCH_MASK, Handler(), 0)
    try:
        assert w.idle()
        (tmp_path / "made.txt").write_text("x")
        deadline = time.monotonic() + 5
        while not w.busy and time.monotonic() < deadline:
            time.sleep(0.005)
        assert w.busy and not w.idle()  # heard of, not handled yet
        gate.set()
        while not (handled and w.idle()) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert "made.txt" in handled and w.idle()
    finally:
        w.stop()
