"""Datasets: the DuckDB file of worlds, tasks and reference trajectories, its task source, its exports.

* :mod:`toolgym.data.dataset`: :class:`~toolgym.data.dataset.Dataset`, transactional batches, resume;
* :mod:`toolgym.data.source`: :class:`~toolgym.data.source.DatasetSource`, the ``"dataset"`` entry of
  ``toolgym.SOURCES`` that a ToolEnv reads its tasks from;
* :mod:`toolgym.data.export`: JSONL / Parquet per split that Hugging Face ``datasets`` loads.

Layer L5 (DESIGN.md): it may import the contract layer, ``envs`` and ``verifiers``, never ``synth``
or ``policy``.
"""
