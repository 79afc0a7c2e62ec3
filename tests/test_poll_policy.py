"""When a job is polled: PollPolicy's schedule, before and after a job has taught it the rate."""

from __future__ import annotations

from streambatch.pipeline import PollPolicy


def test_the_first_job_is_polled_after_the_shortest_wait_not_a_guessed_duration() -> None:
    policy = PollPolicy(min_interval=1.0)
    assert policy.first(25_000) == 1.0  # a guessed 2,000 items/s made this 11.25 s
    waits, waited = [policy.first(25_000)], policy.first(25_000)
    while waited < 12:
        waits.append(policy.next(waited))
        waited += waits[-1]
    assert waits[:5] == [1.0] * 5  # each later poll is at most a fifth of the time waited late
    assert all(w <= max(1.0, 0.2 * sum(waits[:i])) + 1e-9 for i, w in enumerate(waits) if i)


def test_a_completed_job_sizes_the_first_poll_of_the_next() -> None:
    policy = PollPolicy(min_interval=1.0, max_interval=30.0)
    policy.observe(25_000, 10.0, first_poll=False)  # 2,500 items/s seen
    assert policy.first(25_000) == 9.0
    assert policy.first(100) == 1.0
    policy.observe(25_000, 1.0, first_poll=True)  # done at the first poll: at least 25,000/s
    assert policy.rate == 25_000
    assert policy.first(250_000) == 9.0
