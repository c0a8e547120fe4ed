def test_hosts_online(world):
    hosts = {h["id"]: h for h in world.alice.get("/v1/hosts").json()["hosts"]}
    assert set(hosts) == {world.host_local, world.host_a, world.host_b}
    assert all(h["status"] == "online" for h in hosts.values())
