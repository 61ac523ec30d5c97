"""CE3.4 — Batch prediction pipeline.

Score every row of a PostgreSQL table, or of a CSV or Parquet file, with a saved
model: a batch at a time, so that memory stays flat however big the input is, and
so that a run killed half-way can be started again without losing or repeating
work.

The contract (the graders check it against PostgreSQL itself, pyarrow, pandas and
the model's own ``predict``):

* ``model_path`` is a file written by ``joblib.dump``; load it with ``joblib.load`` [model-joblib].
* The model's ``predict`` gets the feature values of the rows of one batch, as a
  pandas DataFrame whose columns are the feature columns in the order given
  (a 2-D array in that order is accepted too) [predict-input].
  A prediction is the number ``predict`` returns for the row, stored as a float: for a
  classifier, the predicted label (``predict``), never a probability (``predict_proba``) [prediction-values].
* ``feature_columns`` defaults to every column of the input except the key column,
  in the input's column order [features-default].
  Given, it names the features, in the order the model expects them; other columns
  of the input are ignored [feature-columns].
* Missing features: a row with at least one missing feature (NULL in the database,
  an empty field in a CSV file, null or NaN in a Parquet file) is not given to the
  model. It still gets an output row, whose prediction is missing (NULL, an empty
  field, null), and it is counted in ``"missing"`` [missing-policy].
  (A NaN in a ``double precision`` column counts as missing too.)
  ``predict`` is never called with 0 rows (a scikit-learn model raises on that): a batch
  whose rows all lack a feature is written with missing predictions and no ``predict``
  call [no-empty-predict].
* Both methods return a dict of counts for the rows of this call:
  ``"predicted"`` (rows the model scored) and ``"missing"`` (rows written with a
  missing prediction) [stats-counts].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

FORMATS = {".csv": "csv", ".parquet": "parquet"}


class BatchPredictor:
    """Score a database table or a file with a saved model, ``batch_size`` rows at a time.

    >>> predictor = BatchPredictor("model.joblib", batch_size=5000)
    >>> predictor.predict_from_db(dsn, "customers", "churn_predictions", key_column="id")
    {'predicted': 199800, 'missing': 200, 'skipped': 0}
    >>> predictor.predict_from_files("customers.parquet", "predictions.parquet")
    {'predicted': 199800, 'missing': 200}
    """

    def __init__(self, model_path, batch_size: int = 1000):
        """Load the model once; ``batch_size`` is the number of rows of one batch, 1000 by default [batch-default].

        The model is loaded here, once: later calls use it, even when the file at
        ``model_path`` has been replaced or removed since [model-once].

        Raises ValueError when ``batch_size`` is below 1 [batch-size-positive].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def predict_from_db(
        self,
        dsn: str,
        input_table: str,
        output_table: str,
        *,
        key_column: str = "id",
        feature_columns: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Score every row of ``input_table`` and write the predictions to ``output_table``.

        ``dsn`` is a PostgreSQL connection string or URL, as ``psycopg.connect`` takes it [db-dsn].
        ``key_column`` names the input's key: unique and not NULL, it identifies a row [key-column].
        Table and column names are identifiers, quoted as such (``psycopg.sql.Identifier``),
        so any name PostgreSQL accepts works, capitals and spaces included [identifiers-quoted].

        ``output_table`` is created when it does not exist, with two columns: the key
        column (same name and type as the input's, the primary key) and
        ``prediction double precision`` [output-schema].
        When it exists already, its rows are kept as they are [output-existing].
        At the end it holds exactly one row per input row [one-row-per-key].

        Rows are read ``batch_size`` at a time, through a server-side cursor or keyset
        pagination, never the whole table at once: memory does not grow with the table [db-streaming].
        Each batch holds at most ``batch_size`` rows, and every batch but the last holds
        exactly ``batch_size`` rows when the output table starts empty [db-batch-size].
        ``predict`` is called once per batch, with the batch's rows that have every feature
        (no call for a batch that has none of them) [db-one-call].
        Each batch's predictions are committed before the next batch is read, so a crash
        loses at most the batch in progress [commit-per-batch].
        An error (of the model or of the database) stops the run and is raised to the caller;
        the batches committed before it stay [crash-raises].

        Re-running is safe: an input row whose key already has a row in ``output_table``
        (a NULL prediction included) is skipped, neither predicted again nor overwritten,
        so a run after a crash resumes where the last one stopped, and a run after new
        input rows arrived scores only those [resume-skip].
        The returned dict also has ``"skipped"``: the input rows skipped that way; rows of
        ``output_table`` whose key is not in the input are kept, and not counted [stats-skipped].

        Raises an exception naming the column (of any type: ValueError, KeyError, ...), and
        writes no row, when ``input_table`` lacks the key column or a feature column [db-missing-column].
        """
        raise NotImplementedError("YOUR CODE HERE")

    def predict_from_files(
        self,
        input_path,
        output_path,
        *,
        key_column: str = "id",
        feature_columns: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Score every row of the file ``input_path`` and write the predictions to ``output_path``.

        The format of each file follows its suffix: ``.csv`` (comma-separated, one
        header row) or ``.parquet`` [file-formats].
        Input and output formats are independent: CSV in, Parquet out works, and the other way round [format-mix].
        Raises ValueError naming the suffix, before reading or writing anything, when either
        path has another suffix: even when the input file does not exist, and before any
        ``predict`` call [unknown-suffix].
        (Only the lower-case suffixes are required: accepting ``.CSV`` or refusing it are both fine.)
        Raises ValueError naming them when the input lacks the key column or a feature column [file-missing-columns].

        The input is streamed: at most ``batch_size`` rows are read at a time, so memory
        does not grow with the file's size [file-streaming].
        (Mind pyarrow's ``ParquetFile``: unless told ``pre_buffer=False``, it reads the
        whole file ahead into memory.)
        ``predict`` gets at most ``batch_size`` rows per call [file-batch-size].
        A bounded read-ahead is fine (pyarrow's CSV reader reads blocks of about 1 MB ahead):
        what must not happen is memory that keeps growing with the file.

        The output has the key column (same name, same values) and a ``prediction``
        column, one row per input row, in the input's order [file-output].
        In a Parquet output, an integer key stays an integer column, and ``prediction``
        is a float column whose missing predictions are null [parquet-types].
        A CSV output starts with the header row ``<key_column>,prediction``; a missing
        prediction is an empty field [csv-output]. Its values are read back as numbers, so
        ``2``, ``2.0`` and ``2.000`` are the same prediction.
        An existing output file is replaced, so running twice gives the same file [file-overwrite].
        """
        raise NotImplementedError("YOUR CODE HERE")


# YOUR CODE HERE
