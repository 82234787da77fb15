"""Search agent: multi-hop and inverted questions over a generated, indexed document collection (see family.py)."""
