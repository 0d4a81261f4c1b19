"""One experiment from zoo to report (``graphnerf experiment``): configs/experiment/*.yaml.

:func:`run_experiment` runs the stages of :mod:`graphnerf.experiment.stages` (zoo, train/<run>,
bench/<run>, report), each resumable and recorded with its cost in ``RUN/stages.json``
(:mod:`graphnerf.experiment.ledger`); :mod:`graphnerf.experiment.report` writes ``RUN/report.md``.
"""

from .stages import ExperimentError, Stage, load_experiment_config, plan_stages, run_experiment

__all__ = ["ExperimentError", "Stage", "load_experiment_config", "plan_stages", "run_experiment"]
