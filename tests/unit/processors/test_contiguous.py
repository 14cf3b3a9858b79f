"""The consumer's rule for source records: in offset order, none skipped (processors/contiguous.py)."""

from modelog.processors.contiguous import DELIVER, RESEEK, Contiguity

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
