"""The ``sql`` family: an SQL analyst over generated DuckDB databases (see :mod:`toolgym.synth.sql.family`)."""
