"""Realistic workloads with ground truth, the pure replay path and the scorecard (issue 6).

- ``generator``: a deterministic engineering organisation (teams, time zones, weekly rhythm,
  holidays, leave) emitting SignalEnvelopes, with planted behaviour changes and their truth;
  its parts are ``organisation`` (offices, teams, actors and their days), ``plants`` (planted
  changes and noise), ``emission`` (actor-days as envelopes) and ``workload`` (the result);
- ``replay``: envelopes -> the same pure analytics path the pipeline uses -> signals;
- ``scorecard``: signals against the planted truth, and the alert rate of a real history.

Nothing here does I/O except the explicit readers and writers in ``workload`` (``write_jsonl``,
``write_truth``, ``read_truth``; ``generator`` re-exports them).
"""
