"""Benchmarks behind `toolgym bench …`."""
