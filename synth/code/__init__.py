"""The code-interpreter family: data files, a sandboxed stateful Python, and computed answers (see ``family.py``)."""
