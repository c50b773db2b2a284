"""What the mail world says back: one home for reading, classifying and applying it.

- ``classify``: the one classifier (a status code and its text → ``Kind``), used at send time
  and for reports.
- ``report_reader``: a message (DSN, ARF, auto-reply, anything) → a ``Report`` of findings.
- ``intake``: a report applied to our readers and issues (``apply_report``), and the summary an
  ingest prints.
- ``refusals``: send-time refusals as ``bounce_event`` rows and the per-domain block pause.
- ``report``: what the recorded events say (an issue's refusals, the pauses in force), for
  ``issues show`` and ``doctor``.

The package sits between the engine and the subscribers: ``delivery`` records its refusals
here, ``issues`` reads the rates from here, and what a report does to a reader is a call into
``subscribers`` (bounce, complain, unsubscribe).
"""
