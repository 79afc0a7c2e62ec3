"""Job file names sort in the order the jobs were made (retention keeps the newest by name)."""

from __future__ import annotations

from streambatch.feeds.worker import job_name


def test_job_file_names_sort_as_they_were_made() -> None:
    # the second and the microseconds of a name come from one instant: a name made just after a
    # second turned must not sort before the names made earlier in that second (retention keeps
    # the newest job files by name, and removed the newest one)
    base = 1_900_000_000 * 10**9
    instants = [base + 999_999_000, base + 10**9 + 8_000, base + 10**9 + 500_000_000]
    names = [job_name("job", ns) for ns in instants]
    assert names == sorted(names) and len(set(names)) == 3
    assert names[1].endswith("-000008.sqlite")
