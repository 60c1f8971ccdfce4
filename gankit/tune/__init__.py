"""`gankit tune`: hyperparameter search on Optuna, where every trial is an ordinary gankit run folder.

space.py parses and checks the search space; study.py holds the study's storage, fingerprint and spec; objective.py
turns a trial into a training run and runs a worker's trials; report.py writes STUDY/report.html and best.yaml;
run.py is the command from start to end; runs.py trains a fixed list of runs on N workers (`gankit sweep`'s grid,
`--best-seeds`), without Optuna. Optuna is an optional extra (``pip install 'gankit[tune]'``).
"""
