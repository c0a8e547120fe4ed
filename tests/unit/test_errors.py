"""The error tree: HTTP status by MRO, and pickling across Ray."""

import pickle

import pytest

from omnigent import errors as e
from omnigent.wire import status_for

CASES = [
    (e.InvalidRequest, 400, "invalid_request"),
    (e.InvalidPath, 400, "invalid_path"),
    (e.InvalidBranch, 400, "invalid_branch"),
    (e.InvalidWorkspace, 400, "invalid_workspace"),
    (e.AlreadyBound, 400, "runner_already_bound"),
    (e.Unauthenticated, 401, "unauthenticated"),
    (e.Forbidden, 403, "forbidden"),
    (e.NotFound, 404, "not_found"),
    (e.Conflict, 409, "conflict"),
    (e.HostOffline, 409, "host_offline"),
    (e.RunnerNotBound, 409, "runner_not_bound"),
    (e.HostIOError, 502, "host_io_error"),
    (e.LaunchFailed, 502, "launch_failed"),
    (e.Unavailable, 503, "unavailable"),
    (e.RunnerUnavailable, 503, "runner_unavailable"),
    (e.UpstreamTimeout, 504, "host_timeout"),
    (e.OmnigentError, 500, "internal_error"),
]


@pytest.mark.parametrize("cls, status, code", CASES)
def test_status_and_default_code(cls, status, code):
    exc = cls("boom")
    assert status_for(exc) == status
    assert exc.code == code
    assert str(exc) == "boom"


def test_subclass_outside_table_inherits_status_by_mro():
    class HostGone(e.HostOffline):
        pass

    assert status_for(HostGone("x")) == 409
    assert HostGone("x").code == "host_offline"


@pytest.mark.parametrize("cls, status, code", CASES)
def test_pickle_round_trip_keeps_class_message_code(cls, status, code):
    back = pickle.loads(pickle.dumps(cls("something failed")))
    assert type(back) is cls
    assert back.message == "something failed"
    assert str(back) == "something failed"
    assert back.code == code


def test_pickle_round_trip_keeps_custom_code():
    back = pickle.loads(pickle.dumps(e.NotFound("no host h1", code="host_not_found")))
    assert type(back) is e.NotFound
    assert back.message == "no host h1"
    assert back.code == "host_not_found"
    assert status_for(back) == 404


def test_custom_code_does_not_leak_to_class():
    e.NotFound("x", code="host_not_found")
    assert e.NotFound("y").code == "not_found"
