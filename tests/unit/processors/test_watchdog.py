"""The statement deadlines of the SQL endpoint: one thread for all (processors/watchdog.py)."""

import threading

from modelog.processors.watchdog import Watchdog


def test_a_deadline_calls_its_function_and_a_disarmed_one_never_does():
    dog, fired = Watchdog(), []
    late = threading.Event()
    early = dog.arm(0.05, lambda: fired.append("disarmed"))
    dog.arm(0.2, lambda: (fired.append("late"), late.set()))
    dog.arm(0.1, lambda: fired.append("nearer"))
    assert dog.disarm(early) is True
    assert late.wait(5), "the watchdog never called the last deadline"
    assert fired == ["nearer", "late"]  # in deadline order; the disarmed one was skipped though it was due first
    assert dog.pending() == 0


def test_disarming_after_the_deadline_says_it_had_passed():
    dog, done = Watchdog(), threading.Event()
    token = dog.arm(0.01, done.set)
    assert done.wait(5)
    assert dog.disarm(token) is False


def test_a_failing_callback_does_not_end_the_thread():
    dog, done = Watchdog(), threading.Event()
    dog.arm(0.01, lambda: 1 / 0)
    dog.arm(0.05, done.set)
    assert done.wait(5)


def test_disarmed_deadlines_do_not_pile_up():
    dog = Watchdog()
    for _ in range(5000):  # a busy endpoint: every statement arms and disarms a 30 s deadline
        dog.disarm(dog.arm(30, lambda: None))
    assert dog.pending() == 0 and len(dog._heap) <= 1024 + 1
