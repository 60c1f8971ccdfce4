"""Training: the loop (:mod:`.loop`), its state and small parts (:mod:`.state`, :mod:`.parts`), checkpoints
(:mod:`.checkpoint`) and the run folder (:mod:`.rundir`).

``from gankit.training.loop import train``. This package's ``__init__`` imports nothing, so that the task code can use
``checkpoint`` and ``rundir`` without importing the loop that drives it.
"""
