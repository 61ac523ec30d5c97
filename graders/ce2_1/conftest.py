"""Grading set-up for CE2.1 that speeds MLflow up without changing what the learner's code does.

Every ``log_model`` call makes MLflow infer the model's pip requirements by
loading the model again in a fresh Python process (importing MLflow, scikit-learn
and pandas there): 5-25 s per logged model on these machines, most of the
grading time. ``MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT`` is MLflow's own setting
for how long that may take; at 0 MLflow stops at once and writes its default
requirements (``scikit-learn``, ``skops`` with their versions) into the model's
``requirements.txt`` instead. Nothing the graders read depends on that file:
the model is logged, saved, signed and loaded exactly as before. The warning
MLflow prints when it falls back is silenced, so it cannot be mistaken for a
problem in the learner's code.

The checks also run in a temporary working folder: a submission that ignores
``tracking_uri`` falls back to MLflow's default store (``./mlflow.db``,
``./mlruns``) and must not write it into the repository it is graded from.
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module", autouse=True)
def contained_working_folder(tmp_path_factory):
    """Whatever the learner's code writes to its working folder stays in a temporary one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("workdir"))
        yield


@pytest.fixture(scope="module", autouse=True)
def quick_requirement_inference():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "0")
        logger = logging.getLogger("mlflow.utils.environment")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)
