"""Ray actors. Each is a plain class, turned into a Ray actor beside it (`RemoteX` at the
bottom of its module), with its options in `actors.options`.

- ControlActor: users, tokens, hosts and sessions; owns the store; on the server's node.
- SessionActor: one per active session: launching and stopping its runner; exits when idle.
- HostActor: one per host, pinned to the host's node: browsing, launching runners.
- RunnerActor: one per runner, pinned to the host's node, cwd = the workspace.
"""
