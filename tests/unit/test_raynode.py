"""The node wrapper's pure parts: address from SSH, shared secrets, argument lookup."""

import os
import stat

from omnigent import nodeprocs, raynode
from omnigent.credentials import server_secret
from omnigent.domain.enrollment import join_key, join_key_owner


def test_address_is_where_ssh_reached_us(monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 50000 127.0.0.3 22")
    assert raynode.ssh_server_address() == "127.0.0.3"
    monkeypatch.delenv("SSH_CONNECTION")
    assert raynode.ssh_server_address() is None


def test_arg_lookup():
    args = ["--head", "--port=6379", "--address", "h:1"]
    assert nodeprocs.cli_arg(args, "--port") == "6379"
    assert nodeprocs.cli_arg(args, "--address") == "h:1"
    assert nodeprocs.cli_arg(args, "--node-ip-address") is None


def test_head_shares_token_and_join_keys_privately(tmp_path, monkeypatch):
    head, worker = tmp_path / "head", tmp_path / "worker"
    head.mkdir()
    worker.mkdir()
    shared = tmp_path / "shared"
    monkeypatch.setenv("HOME", str(head))
    raynode.share_secrets(shared, {"127.0.0.3": "alice"}, admin="root")
    secret = server_secret(head / ".omnigent")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o700
    for f in (shared / "ray_token", shared / "join" / "default", shared / "join" / "127.0.0.3"):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    monkeypatch.setenv("HOME", str(worker))
    assert join_key_owner(secret, raynode.take_shared_secrets(shared, "127.0.0.3")) == "alice"
    assert raynode.take_shared_secrets(shared, "127.0.0.4") == join_key(secret, "root")
    token = worker / ".omnigent" / "ray_token"
    assert token.read_text() == (head / ".omnigent" / "ray_token").read_text()
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
