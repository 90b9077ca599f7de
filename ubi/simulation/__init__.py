"""Realistic workloads with ground truth, the pure replay path and the scorecard (issue 6).

- ``generator``: a deterministic engineering organisation (teams, time zones, weekly rhythm,
  holidays, leave) emitting SignalEnvelopes, with planted behaviour changes and their truth;
- ``replay``: envelopes -> the same pure analytics path the pipeline uses -> signals;
- ``scorecard``: signals against the planted truth, and the alert rate of a real history.

Nothing here does I/O except the explicit writers in ``generator`` (``write_jsonl``,
``write_truth``).
"""
