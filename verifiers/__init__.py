"""Verdicts and answer/constraint/state checks (the quality gates run in :mod:`toolgym.synth.gates`)."""
