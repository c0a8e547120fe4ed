"""Join keys and host ids (omnigent.domain.enrollment), without Ray."""

from omnigent.domain.enrollment import host_id_for, join_key, join_key_owner

SECRET = b"s" * 32


def test_a_key_names_its_user_and_only_the_server_can_make_one():
    key = join_key(SECRET, "alice")
    assert key.startswith("alice.") and join_key_owner(SECRET, key) == "alice"
    assert join_key(SECRET, "alice") == key  # the same line every time
    assert join_key_owner(b"other secret", key) is None
    user, _, mac = key.rpartition(".")
    assert join_key_owner(SECRET, f"bob.{mac}") is None  # another user's name
    assert join_key_owner(SECRET, f"alice.{'0' * len(mac)}") is None
    for bad in (None, "", "alice", ".", "alice.", f".{mac}", key + "x", key[:-1]):
        assert join_key_owner(SECRET, bad) is None


def test_dotted_user_names():
    key = join_key(SECRET, "a.b.c")
    assert join_key_owner(SECRET, key) == "a.b.c"


def test_host_ids_are_stable_and_distinct():
    assert host_id_for("alice", "m1") == host_id_for("alice", "m1")
    assert host_id_for("alice", "m1") != host_id_for("bob", "m1")
    assert host_id_for("alice", "m1") != host_id_for("alice", "m2")
    assert host_id_for("alice", "m1").startswith("host_")
