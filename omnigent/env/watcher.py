"""watchdog's inotify reader, told apart from the tracker's logic.

`_Watcher` overrides one private hook of watchdog (`InotifyFD._check_inotify_fd`):
pyproject pins watchdog to the minor version it was checked against (7.1 changed the hook), and
tests/unit/test_env_watcher.py fails if that hook changes.
"""

from __future__ import annotations

import select

from watchdog.observers.inotify_c import CallbackId, InotifyFD, Mask
from watchdog.observers.inotify_c import InotifyConstants as _C
from watchdog.observers.inotify_c import WatchDescriptor as WatchDescriptor  # for the tracker


class Watcher(InotifyFD):
    """watchdog's inotify reader, telling whether it has handled all it was sent.

    `busy` is set once the queue is known to hold events (before they are read) and
    cleared after they were all handled; so "nothing queued, then not busy" means every
    event made before that check has been handled, and the barrier file can be skipped.
    """

    busy = False

    def _check_inotify_fd(self) -> bool:
        ready = super()._check_inotify_fd()
        self.busy = True
        return ready

    def run(self) -> None:
        while self.should_keep_running():
            for event in self.read_events():
                self.handle_event(event)
            self.busy = False

    def idle(self) -> bool:
        queued = select.select([self._inotify_fd], [], [], 0)[0]
        return not queued and not self.busy


IN_CREATE = int(_C.IN_CREATE)
IN_DELETE = int(_C.IN_DELETE)
IN_MOVED_FROM = int(_C.IN_MOVED_FROM)
IN_MOVED_TO = int(_C.IN_MOVED_TO)
IN_ISDIR = int(_C.IN_ISDIR)
WATCH_MASK = Mask(
    _C.IN_CREATE
    | _C.IN_DELETE
    | _C.IN_MODIFY
    | _C.IN_MOVED_FROM
    | _C.IN_MOVED_TO
    | _C.IN_ATTRIB
    | _C.IN_ONLYDIR
    | _C.IN_DONT_FOLLOW
    | _C.IN_EXCL_UNLINK
)
BARRIER_MASK = Mask(_C.IN_CREATE | _C.IN_ONLYDIR)
CALLBACK_ID = CallbackId(0)  # the tracker registers one callback per watch
