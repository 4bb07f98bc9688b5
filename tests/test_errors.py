"""The one errors module: every error pickles with its message and attributes (Dask workers
send errors back to the flow), and whether a retry may help is a property of the type."""

from __future__ import annotations

import pickle

import selective_sync.errors as errors
from selective_sync.errors import DistrictNotConfigured, SelectiveSyncError


def _all_error_types() -> list[type[SelectiveSyncError]]:
    found, todo = [], [SelectiveSyncError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_lives_in_the_errors_module():
    # Importing the whole core registers every subclass there is.
    import selective_sync.cli  # noqa: F401
    import selective_sync.reconcile  # noqa: F401
    import selective_sync.sync  # noqa: F401
    import selective_sync.verification  # noqa: F401

    outside = [c.__module__ + "." + c.__name__ for c in _all_error_types()]
    outside = [name for name in outside if not name.startswith("selective_sync.errors.")]
    assert outside == []
    assert len(_all_error_types()) >= 10


def test_errors_pickle_with_their_message_and_attributes():
    exc = DistrictNotConfigured(999, ["275 MAPLE VALLEY", "276 OAK"])
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is DistrictNotConfigured
    assert (
        str(back)
        == str(exc)
        == ("district 999 is not configured here (configured: 275 MAPLE VALLEY, 276 OAK)")
    )
    assert (back.number, back.configured) == (999, ["275 MAPLE VALLEY", "276 OAK"])
    for cls in _all_error_types():
        if cls is DistrictNotConfigured:
            continue
        plain = cls.__new__(cls)
        Exception.__init__(plain, f"a {cls.__name__} happened")
        again = pickle.loads(pickle.dumps(plain))
        assert type(again) is cls and str(again) == f"a {cls.__name__} happened"


def test_transient_is_marked_by_type():
    from selective_sync.sync import is_transient

    transient = {c.__name__ for c in _all_error_types() if c.transient}
    assert transient == {"TransientFault", "BatchAborted"}
    assert is_transient(errors.BatchAborted("down", outcomes=[], remaining=[1]))
    assert not is_transient(errors.BadInput("bad"))
    aborted = pickle.loads(pickle.dumps(errors.BatchAborted("down", remaining=[3, 4])))
    assert aborted.remaining == [3, 4] and aborted.outcomes == [] and is_transient(aborted)
