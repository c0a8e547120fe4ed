"""A session's environment: pure logic that runs on the host, inside the RunnerActor."""
