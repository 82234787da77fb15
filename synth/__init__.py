"""Families and the synthesis pipeline."""
