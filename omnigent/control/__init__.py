"""The control plane's logic, without Ray: plain classes the ControlActor (actors/control.py)
wires together and delegates to. Each takes its collaborators in its constructor (the store
thread, a clock, settings, lookups), so each is tested on its own with a real SQLite store.

- db.py        StoreThread: store calls off the event loop: writes on one thread, in
               group commits; reads on reader threads, beside the writes
- watch.py     Version: a counter with a long-poll (`wait_past`)
- tokens.py    Tokens: check, create, list, revoke; the token version the API follows
- hosts.py     Hosts: the host table, status, enrollment decisions, the table's version
- sessions.py  Sessions: session records, their public form, terminal moves
- files.py     Files: a session's uploaded files (metadata in the store, bytes on disk)
- runners.py   Runners: binding, acknowledgement, runner records, ends

Imports run one way: actors → omnigent.control → omnigent.store / omnigent.domain.
"""
