"""The outage lines an operator reads: one when an outage begins, one when it ends, whichever
thread of a worker meets it and however many delivery processes share it. The end-to-end tests
(a PostgreSQL restart, SQLite locked past its busy timeout) are in test_outages_e2e.py."""

from __future__ import annotations

import threading

from weekly_mailer.delivery.outages import OutageLines
from weekly_mailer.delivery.processes import _outage_report
from weekly_mailer.errors import DatabaseUnavailableError


def test_an_outage_met_by_many_threads_is_said_once_and_its_end_once() -> None:
    said: list[str] = []
    lines = OutageLines(said.append, said.append, limit=300)
    start = threading.Barrier(8)

    def meet() -> None:  # the recorder, the claim, the heartbeat… all at once
        start.wait()
        lines.failed(DatabaseUnavailableError("OperationalError: database is locked"))

    threads = [threading.Thread(target=meet) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines.failed(DatabaseUnavailableError("still locked"))  # the probe, failing again
    lines.reached()
    lines.reached()  # the next verbs: nothing more to say
    assert said[0] == (
        "database unavailable (OperationalError: database is locked): delivery waits and "
        "retries for up to 300 s"
    )
    assert len(said) == 2
    assert said[1].startswith("database available again after ")
    assert said[1].endswith(" s: delivery goes on")
    lines.failed(DatabaseUnavailableError("connection refused"))  # a new outage: its own line
    assert said[2] == (
        "database unavailable (connection refused): delivery waits and retries for up to 300 s"
    )
    assert lines.count == 2


def test_a_crew_says_an_outage_when_its_first_child_meets_it_and_its_end_when_the_last_is_back(
) -> None:
    said: list[str] = []
    out: set[int] = set()
    _outage_report(out, "outage", 0, "database unavailable (a)", said.append)
    _outage_report(out, "outage", 1, "database unavailable (b)", said.append)
    _outage_report(out, "back", 0, "database available again after 3 s", said.append)
    assert said == ["database unavailable (a)"]
    _outage_report(out, "back", 1, "database available again after 4 s", said.append)
    _outage_report(out, "back", 1, "database available again after 4 s", said.append)
    assert said == ["database unavailable (a)", "database available again after 4 s"]
