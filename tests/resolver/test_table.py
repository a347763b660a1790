"""The name table's rules, including racing refreshes (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outlast.dns import Failure, Negative, Outcome, Positive
from outlast.dns._table import NameTable

ADDRESSES = st.sampled_from([("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3", "10.0.0.4")])
OUTCOMES = st.one_of(
    ADDRESSES.map(lambda a: Positive(a, 5.0, "p")),
    st.sampled_from([Negative("NXDOMAIN", 5.0, "p"), Negative("NODATA", 5.0, "p")]),
    st.just(Failure("timed out", "p")),
)
REFRESHES = st.lists(
    st.tuples(
        st.floats(0, 100, allow_nan=False),  # when the refresh started
        st.floats(0, 30, allow_nan=False),  # how long it took
        OUTCOMES,
    ),
    min_size=1,
    max_size=40,
)


def table(keep_on_empty: float = 10_000.0) -> NameTable:
    return NameTable(size=10, min_ttl=1, max_ttl=3600, keep_on_empty=keep_on_empty, negative_ttl=5)


@settings(max_examples=400, deadline=None)
@given(REFRESHES)
def test_racing_refreshes_never_regress(refreshes: list[tuple[float, float, Outcome]]) -> None:
    names = table()
    finished = sorted(refreshes, key=lambda r: r[0] + r[1])
    applied_positive_starts: list[float] = []
    applied_positives: list[tuple[float, tuple[str, ...]]] = []
    last_generation = float("-inf")
    ever_good = False
    for start, took, outcome in finished:
        before = names.get("n")
        held_before = before.addresses if before else None
        names.apply("n", start, outcome, start + took)
        after = names.get("n")
        # An answer never replaces one from a refresh that started later.
        if any(s > start for s in applied_positive_starts):
            assert after is not None
            assert after.addresses == held_before
        if after is not None:
            assert after.generation >= last_generation
            last_generation = after.generation
        if isinstance(outcome, Positive) and after is not None and after.generation == start:
            applied_positive_starts.append(start)
            applied_positives.append((start, outcome.addresses))
            assert after.addresses == outcome.addresses
        # The newest positive applied so far is what is held (a model of the rule).
        if applied_positives:
            newest = max(start for start, _ in applied_positives)
            expected = [a for start, a in applied_positives if start == newest][-1]
            assert after is not None
            assert after.addresses == expected
        ever_good = ever_good or bool(after and after.addresses)
        # Nothing deletes the only good copy while negatives are distrusted.
        if ever_good:
            assert after is not None
            assert after.addresses


@settings(max_examples=200, deadline=None)
@given(REFRESHES)
def test_failures_never_change_what_is_served(
    refreshes: list[tuple[float, float, Outcome]],
) -> None:
    names = table()
    for start, took, outcome in sorted(refreshes, key=lambda r: r[0] + r[1]):
        before = names.get("n")
        snapshot = None if before is None else (before.addresses, before.suspect)
        names.apply("n", start, outcome, start + took)
        after = names.get("n")
        if isinstance(outcome, Failure):
            assert (None if after is None else (after.addresses, after.suspect)) == snapshot


def test_a_negative_is_believed_once_it_has_held_for_keep_on_empty() -> None:
    names = table(keep_on_empty=60)
    names.apply("n", 0, Positive(("10.0.0.1",), 5, "p"), 0)
    names.apply("n", 10, Negative("NXDOMAIN", 5, "p"), 10)
    entry = names.get("n")
    assert entry is not None
    assert entry.addresses == ("10.0.0.1",)
    assert entry.suspect == "NXDOMAIN"
    names.apply("n", 69, Negative("NXDOMAIN", 5, "p"), 69)
    assert names.get("n") is not None
    assert names.get("n").addresses == ("10.0.0.1",)  # type: ignore[union-attr]
    names.apply("n", 70, Negative("NXDOMAIN", 5, "p"), 70)
    held = names.get("n")
    assert held is not None
    assert held.addresses == ()
    assert held.negative == "NXDOMAIN"


def test_a_positive_between_negatives_restarts_the_distrust() -> None:
    names = table(keep_on_empty=60)
    names.apply("n", 0, Positive(("10.0.0.1",), 5, "p"), 0)
    names.apply("n", 10, Negative("NODATA", 5, "p"), 10)
    names.apply("n", 50, Positive(("10.0.0.2",), 5, "p"), 50)
    names.apply("n", 60, Negative("NODATA", 5, "p"), 60)
    names.apply("n", 100, Negative("NODATA", 5, "p"), 100)
    held = names.get("n")
    assert held is not None
    assert held.addresses == ("10.0.0.2",)
    assert held.suspect_since == 60


def test_keep_on_empty_zero_believes_negatives_at_once() -> None:
    names = table(keep_on_empty=0)
    names.apply("n", 0, Positive(("10.0.0.1",), 5, "p"), 0)
    names.apply("n", 10, Negative("NXDOMAIN", 5, "p"), 10)
    held = names.get("n")
    assert held is not None
    assert held.negative == "NXDOMAIN"
