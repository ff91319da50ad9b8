"""sipcore/journal.py: extend() wakes the waiters once every entry of the batch is in."""

from twisted.internet.task import Clock

from sipharness.sipcore.journal import Journal


def test_a_waiter_woken_by_a_batch_finds_the_whole_batch():
    j = Journal(Clock())
    seen = []
    j.wait_for(lambda e: e == "200", 10).addCallback(lambda e: seen.append((e, list(j))))
    j.extend(["200", "ACK"])
    assert seen == [("200", ["200", "ACK"])]
    late = j.wait_for(lambda e: e == "ACK", 10, count=1)
    assert late.called  # already there: fires at once
    got = []
    j.subscribe(got.append)
    j.extend(["BYE", "200"])
    assert got == ["BYE", "200"] and len(j) == 4
