"""The consumer's rule for source records: in offset order, none skipped (processors/contiguous.py)."""

from modelog.processors.contiguous import DELIVER, RESEEK, Contiguity, Progress

TP = ("modelog.monitoring", 0)


def deliver_all(c: Contiguity, offsets) -> list:
    return [c.decide(TP, o) for o in offsets]


def test_in_order_records_are_delivered_from_the_first_known_position():
    c = Contiguity()
    assert deliver_all(c, [5, 6, 7]) == [(DELIVER, None)] * 3
    assert c.expected[TP] == 8


def test_a_record_past_the_expected_offset_is_read_again_from_it():
    c = Contiguity()
    c.sought(TP, 47)  # faust's seek to the committed offset
    assert c.decide(TP, 49) == (RESEEK, 47)  # 47 and 48 fetched before the seek, never delivered
    c.sought(TP, 47)  # the consumer's seek back
    assert deliver_all(c, [47, 48, 49]) == [(DELIVER, None)] * 3
    assert c.reread == {}


def test_a_skip_of_one_record_right_after_a_seek_is_caught():
    # faust's own gap test compares with the committed offset as if it were the last one read, so 47 -> 48
    # after a seek to 47 looks contiguous to it
    c = Contiguity()
    c.sought(TP, 47)
    assert c.decide(TP, 48) == (RESEEK, 47)


def test_a_re_read_from_an_earlier_offset_is_followed():
    c = Contiguity()
    deliver_all(c, [10, 11, 12])
    c.sought(TP, 11)
    assert deliver_all(c, [11, 12, 13]) == [(DELIVER, None)] * 3
    assert c.expected[TP] == 14
    assert c.decide(TP, 9) == (DELIVER, None)  # an older record (a redelivery) is not a hole
    assert c.expected[TP] == 10


def test_a_hole_the_broker_confirms_is_accepted_after_confirm_reads():
    c = Contiguity(confirm=3)
    c.sought(TP, 10)
    assert c.decide(TP, 15) == (RESEEK, 10)
    c.sought(TP, 10)
    assert c.decide(TP, 15) == (RESEEK, 10)
    c.sought(TP, 10)
    assert c.decide(TP, 15) == (DELIVER, 10)  # offsets 10-14 are not on the log
    assert c.expected[TP] == 16 and TP not in c.reread


def test_re_reads_count_per_expected_offset_and_partition():
    c = Contiguity(confirm=2)
    other = ("modelog.monitoring", 1)
    c.sought(TP, 10)
    c.sought(other, 3)
    assert c.decide(TP, 12) == (RESEEK, 10)
    assert c.decide(other, 5) == (RESEEK, 3)  # another partition's hole is its own
    c.sought(TP, 10)
    assert c.decide(TP, 10) == (DELIVER, None)  # the re-read found the record: the count starts over
    assert c.decide(TP, 13) == (RESEEK, 11)
    assert c.decide(TP, 13) == (DELIVER, 11)


def test_an_unknown_position_accepts_the_first_record():
    c = Contiguity()
    c.sought(TP, 10)
    c.sought(TP, None)  # no committed offset: the broker's reset policy decides
    assert c.decide(TP, 7) == (DELIVER, None)
    assert c.expected[TP] == 8


# Progress: the agent's side -- records on the log that never reached it, with none after them


def test_records_the_idle_agent_never_got_are_read_again_from_the_first_of_them():
    p = Progress(idle_s=2.0)
    p.assigned(TP, 40, 0.0)  # the group's committed offset
    p.started(10.0)
    p.finished([(TP, 40), (TP, 41), (TP, 42)], 10.5)
    assert p.stalled({TP: 45}, 11.0) == []  # idle for 0.5 s only: the rest may still be on its way
    assert p.stalled({TP: 45}, 12.5) == [(TP, 43, 45, False)]
    assert p.stalled({TP: 45}, 13.0) == []  # a check that found some waits another idle period
    p.started(13.2)
    p.finished([(TP, 43), (TP, 44)], 13.3)
    assert p.stalled({TP: 45}, 20.0) == [] and p.next[TP] == 45


def test_a_busy_agent_is_never_told_to_read_again():
    p = Progress(idle_s=2.0)
    p.assigned(TP, 0, 0.0)
    p.started(0.0)
    assert p.stalled({TP: 100}, 60.0) == []  # a batch that takes a minute (a full disk, a slow broker)
    p.finished([(TP, 0)], 61.0, processed=False)  # it raised: what it had is still needed
    assert p.next[TP] == 0
    assert p.stalled({TP: 100}, 63.5) == [(TP, 0, 100, False)]


def test_nothing_outstanding_or_nothing_known_is_not_a_stall():
    p = Progress(idle_s=1.0)
    p.assigned(TP, None, 0.0)  # no committed offset: the processors read from the earliest
    assert p.next[TP] == 0
    other = ("modelog.tracking", 3)
    assert p.stalled({TP: 0, other: 7}, 5.0) == []  # empty partition; a partition not assigned to the agent
    assert p.stalled({TP: None}, 5.0) == []  # no fetch response yet


def test_a_partition_kept_across_a_rebalance_keeps_what_the_agent_processed_beyond_the_commit():
    p = Progress()
    p.assigned(TP, 10, 0.0)
    p.finished([(TP, o) for o in range(10, 30)], 1.0)
    p.assigned(TP, 20, 0.0)  # the seek after a rebalance, to an older commit: 20 to 29 come again
    assert p.next[TP] == 30
    p.revoked([TP])
    p.finished([(TP, 30)], 2.0)  # a batch of a partition revoked meanwhile: its new owner's
    assert TP not in p.next
    p.assigned(TP, 25, 0.0)  # assigned again later: from its commit, whatever this worker once processed
    assert p.next[TP] == 25


def test_offsets_re_read_in_vain_confirm_times_are_taken_as_not_on_the_log():
    p = Progress(idle_s=1.0, confirm=3)
    p.assigned(TP, 7, 0.0)
    found = [p.stalled({TP: 9}, t) for t in (2.0, 4.0, 6.0, 8.0)]
    assert found == [[(TP, 7, 9, False)]] * 3 + [[(TP, 7, 9, True)]]  # e.g. a transaction marker at 7-8
    assert p.next[TP] == 9 and p.stalled({TP: 9}, 10.0) == []


def test_a_batch_past_a_hole_is_held_back_and_read_again_once():
    """What CI showed (2026-12-01): after a seek to the committed 15, faust handed the agent offset 19 only --
    15 to 18 were dropped as already read. Processing 19 would have closed the model's window without them."""
    p = Progress()
    p.assigned(TP, 15, 0.0)
    other = ("modelog.monitoring", 1)
    p.assigned(other, 0, 0.0)
    kept, holes = p.contiguous([(TP, 19), (other, 0), (TP, 20), (other, 1)])
    assert kept == [1, 3] and holes == {TP: 15}  # the other partition's records go on
    p.finished([(other, 0), (other, 1)], 1.0)
    assert p.next == {TP: 15, other: 2}
    assert p.contiguous([(TP, 20)]) == ([], {})  # fetched before the re-read: the same hole, held back silently
    kept, holes = p.contiguous([(TP, 15), (TP, 16), (TP, 17), (TP, 18), (TP, 19)])
    assert kept == [0, 1, 2, 3, 4] and holes == {}
    p.finished([(TP, o) for o in range(15, 20)], 2.0)
    assert p.next[TP] == 20 and TP not in p.pending
    assert p.contiguous([(TP, 25)]) == ([], {TP: 20})  # a new hole is read again


def test_re_reads_below_the_next_offset_are_processed_again():
    p = Progress()
    p.assigned(TP, 10, 0.0)
    p.finished([(TP, o) for o in range(10, 20)], 1.0)
    kept, holes = p.contiguous([(TP, 12), (TP, 13), (TP, 19), (TP, 20), (TP, 21)])  # a seek back to 12
    assert kept == [0, 1, 2, 3, 4] and holes == {}


def test_a_hole_the_consumer_accepted_is_not_read_again():
    p = Progress()
    p.assigned(TP, None, 0.0)
    p.skip_to(TP, 40)  # Contiguity confirmed 0-39 are not on the log (retention)
    assert p.contiguous([(TP, 40), (TP, 41)]) == ([0, 1], {})


def test_a_stall_check_forgets_the_hole_it_reads_again():
    p = Progress(idle_s=1.0)
    p.assigned(TP, 5, 0.0)
    assert p.contiguous([(TP, 8)]) == ([], {TP: 5})
    p.finished([], 1.0)
    assert p.stalled({TP: 9}, 3.0) == [(TP, 5, 9, False)]  # the re-read never came
    assert p.contiguous([(TP, 8)]) == ([], {TP: 5})  # so the same hole is read again anew


def test_a_partition_just_sought_is_given_time_to_arrive():
    """Right after a rebalance the agent has been idle for long, but the records of a partition just assigned
    are still on their way: not a stall."""
    p = Progress(idle_s=2.0)
    p.finished([], 0.0)
    p.assigned(TP, 11, 100.0)
    assert p.stalled({TP: 17}, 100.1) == []
    p.sought(TP, 101.0)  # any other seek too
    assert p.stalled({TP: 17}, 102.5) == []
    assert p.stalled({TP: 17}, 103.1) == [(TP, 11, 17, False)]
