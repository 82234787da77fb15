"""Verdicts, answer/constraint/state checks and the quality gates."""
