"""Graders for CE3.4 — the batch prediction pipeline.

Every check runs the learner's ``BatchPredictor`` against a real PostgreSQL server
(the ``postgres`` fixture) or real CSV/Parquet files, and compares what it wrote
with an independent reference: the rows read back with SQL, pyarrow or the csv
module, scored here by the same fitted scikit-learn estimator the learner's file
loads (``estimator.predict``, never the learner's objects).

The model the learner loads is a ``LoggedModel`` (``ce3_4_support.py``) saved with
``joblib.dump``: it predicts like the estimator it wraps, and logs each ``predict``
call (how many rows, which columns, how many output rows were committed at that
moment). That is how batch sizes, one call per batch and one commit per batch are
observed from outside. Peak memory is measured in a child process, where nothing
but the learner's code runs.

No verdict rests on a random draw: every table and file is built from fixed
formulas, and each expected value is computed before the learner's answer is read.
Table names carry a fresh suffix, so the checks pass on a server already used by
an earlier run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from ce3_4_support import LoggedModel, read_log
from psycopg import sql
from sklearn.linear_model import LinearRegression

from workbook.checks import learner_error
from workbook.sealed import run_learner_program, share_with_learner

FEATURES = ["f1", "f2", "f3"]
SUPPORT = Path(__file__).with_name("ce3_4_support.py")
# The learner's code loads LoggedModel files: under sealed grading its process imports the class too.
share_with_learner(SUPPORT)

pytestmark = pytest.mark.timeout(60)


# -- data built from fixed formulas -----------------------------------------------------------


def feature_values(keys: np.ndarray, k: int) -> np.ndarray:
    """Feature column ``k`` (0, 1, 2, ...) of the rows with these keys: quarter steps in [-5, 5]."""
    primes = [37, 11, 5, 23, 13, 29]
    moduli = [41, 17, 13, 19, 23, 31]
    return ((keys * primes[k]) % moduli[k] - moduli[k] // 2) / 4.0


def fitted_estimator(n_features: int = 3) -> LinearRegression:
    """A linear model with distinct coefficients, so features in the wrong order give other values.

    Its intercept is 22/7: no prediction is a short decimal, so an output written with fewer
    digits than the float has (a CSV with float_format="%.3f", a ``real`` column) reads back
    other values."""
    keys = np.arange(400)
    X = np.column_stack([feature_values(keys, k) for k in range(n_features)])
    coefficients = np.array([1.5, -2.0, 0.5, 3.0, -1.0, 0.25])[:n_features]
    return LinearRegression().fit(X, X @ coefficients + 22 / 7)


@pytest.fixture(scope="module")
def estimator() -> LinearRegression:
    return fitted_estimator()


@pytest.fixture(scope="module", autouse=True)
def contained_working_folder(tmp_path_factory):
    """Whatever the learner's code writes to its working folder stays in a temporary one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("workdir"))
        yield


@pytest.fixture
def batch(load_module):
    return load_module("batch")


def save_model(folder: Path, estimator, features=FEATURES, **logging) -> tuple[Path, Path]:
    """Save a LoggedModel with joblib; return (model path, log path)."""
    log = folder / f"predict-calls-{uuid.uuid4().hex[:6]}.jsonl"
    path = folder / f"model-{uuid.uuid4().hex[:6]}.joblib"
    joblib.dump(LoggedModel(estimator, features, log=log, **logging), path)
    return path, log


def table_name(label: str) -> str:
    return f"ce34_{label}_{uuid.uuid4().hex[:8]}"


def create_input(conn, name: str, keys, *, key: str = "id", features=FEATURES,
                 key_type: str = "bigint", extra: dict[str, str] | None = None,
                 nulls: dict[str, str] | None = None, nans: dict[str, str] | None = None) -> None:
    """``name(key, *extra, *features)`` with one row per key; ``nulls[f]`` (``nans[f]``) is a SQL
    condition on ``i`` (the key) under which feature ``f`` is NULL ('NaN')."""
    extra = extra or {}
    nulls = nulls or {}
    columns = [sql.SQL("{} {} PRIMARY KEY").format(sql.Identifier(key), sql.SQL(key_type))]
    columns += [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in extra.items()]
    columns += [sql.SQL("{} double precision").format(sql.Identifier(f)) for f in features]
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(name), sql.SQL(", ").join(columns)))
    insert_rows(conn, name, keys, key=key, features=features, extra=extra, nulls=nulls, nans=nans)


def insert_rows(conn, name, keys, *, key="id", features=FEATURES, extra=None, nulls=None, nans=None) -> None:
    primes = [37, 11, 5, 23, 13, 29]
    moduli = [41, 17, 13, 19, 23, 31]
    values = []
    for k, f in enumerate(features):
        formula = sql.SQL("(mod(i * {p}, {m}) - {h}) / 4.0").format(
            p=sql.Literal(primes[k]), m=sql.Literal(moduli[k]), h=sql.Literal(moduli[k] // 2))
        condition = (nulls or {}).get(f)
        if condition:
            formula = sql.SQL("CASE WHEN {} THEN NULL ELSE {} END").format(sql.SQL(condition), formula)
        condition = (nans or {}).get(f)
        if condition:
            formula = sql.SQL("CASE WHEN {} THEN 'NaN'::double precision ELSE {} END").format(
                sql.SQL(condition), formula)
        values.append(formula)
    extra_values = [sql.SQL("'row ' || i") for _ in (extra or {})]
    conn.execute(
        sql.SQL("INSERT INTO {t} ({cols}) SELECT i, {vals} FROM unnest(%s::bigint[]) AS i").format(
            t=sql.Identifier(name),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in [key, *(extra or {}), *features]),
            vals=sql.SQL(", ").join([*extra_values, *values]),
        ),
        (list(map(int, keys)),),
    )
    conn.commit()


def expected_from_db(conn, name: str, estimator, *, key="id", features=FEATURES) -> dict:
    """key -> expected prediction (None for a row with a missing feature), read with SQL."""
    rows = conn.execute(sql.SQL("SELECT {}, {} FROM {} ORDER BY 1").format(
        sql.Identifier(key), sql.SQL(", ").join(map(sql.Identifier, features)), sql.Identifier(name)
    )).fetchall()
    keys = [r[0] for r in rows]
    X = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows], dtype=float)
    complete = ~np.isnan(X).any(axis=1)
    predicted = np.full(len(rows), np.nan)
    if complete.any():
        predicted[complete] = estimator.predict(X[complete])
    return {k: (None if math.isnan(p) else float(p)) for k, p in zip(keys, predicted, strict=True)}


def output_rows(conn, name: str, key="id") -> list[tuple]:
    __tracebackhide__ = True
    try:
        return conn.execute(sql.SQL("SELECT {}, prediction FROM {}").format(
            sql.Identifier(key), sql.Identifier(name))).fetchall()
    except Exception as exc:
        conn.rollback()
        raise AssertionError(
            f"the output table {name!r} should have the columns {key!r} and 'prediction'; "
            f"reading them failed: {type(exc).__name__}: {str(exc).strip()}"
        ) from None


def assert_predictions(got_rows, expected: dict, *, where: str, rel: float = 1e-9) -> None:
    """Exactly one row per expected key, each with the expected prediction (or missing)."""
    __tracebackhide__ = True
    keys = [r[0] for r in got_rows]
    duplicated = sorted(k for k, n in Counter(keys).items() if n > 1)
    assert not duplicated, (
        f"{where} should hold one row per key; keys {duplicated[:5]} appear more than once "
        f"({len(keys)} rows for {len(set(keys))} keys)"
    )
    lost = sorted(set(expected) - set(keys))
    assert not lost, f"{where} should have a row for every input row; {len(lost)} are missing, e.g. keys {lost[:5]}"
    extra = sorted(set(keys) - set(expected), key=str)
    assert not extra, f"{where} should only have rows of input keys; got extra keys {extra[:5]}"
    for k, value in got_rows:
        want = expected[k]
        if want is None:
            assert value is None or (isinstance(value, float) and math.isnan(value)), (
                f"{where}: the row with key {k} has a missing feature, so its prediction should be "
                f"missing (NULL); got {value!r}"
            )
            continue
        assert value is not None and math.isclose(float(value), want, rel_tol=rel, abs_tol=1e-9), (
            f"{where}: the prediction of key {k} should be the model's {want!r}; got {value!r}"
        )


def error_chain(exc: BaseException) -> list[BaseException]:
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def stat(stats, name: str, *, what: str) -> int:
    __tracebackhide__ = True
    assert isinstance(stats, dict), f"{what} should return a dict of counts; got {type(stats).__name__}"
    assert name in stats, f"{what} should return a dict with {name!r}; got the keys {sorted(stats)}"
    return stats[name]


def assert_stats(stats, *, what: str, **expected: int) -> None:
    __tracebackhide__ = True
    for name, want in expected.items():
        got = stat(stats, name, what=what)
        assert got == want, f"{what} should return {name!r} = {want}; got {got!r}"


# -- the constructor --------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.covers("batch-size-positive")
@pytest.mark.parametrize("size", [0, -3])
def test_batch_size_below_one_is_refused(batch, estimator, tmp_path, size):
    """A batch of zero (or fewer) rows would never end: the constructor refuses it."""
    model, _ = save_model(tmp_path, estimator)
    with learner_error(ValueError, what=f"BatchPredictor(model_path, batch_size={size})"):
        batch.BatchPredictor(model, batch_size=size)


@pytest.mark.points(1)
@pytest.mark.covers("batch-size-positive", "file-batch-size")
def test_batch_size_of_one_is_accepted(batch, estimator, tmp_path):
    """batch_size=1, the smallest allowed, works: one row per predict call."""
    table = file_table(np.arange(5))
    source = write_input(table, tmp_path / "in.csv")
    model, log = save_model(tmp_path, estimator)
    batch.BatchPredictor(model, batch_size=1).predict_from_files(source, tmp_path / "out.csv")
    sizes = [c["rows"] for c in read_log(log)]
    assert sizes == [1] * 5, f"with batch_size=1, predict should get one row per call; got calls with {sizes} rows"
    assert_file_output(tmp_path / "out.csv", expected_from_table(table, estimator), where="out.csv (batch_size=1)")


# -- predict_from_db --------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.covers("model-joblib", "db-dsn", "output-schema", "one-row-per-key",
                    "prediction-values", "predict-input")
def test_db_scores_every_row_once_with_the_models_values(batch, estimator, postgres, tmp_path):
    """Every input row gets one output row whose prediction is the model's; the table is created."""
    source, target = table_name("in"), table_name("out")
    keys = np.arange(1, 1235) * 3  # not 0..n-1: keys are values, not positions
    with postgres.connect() as conn:
        create_input(conn, source, keys)
        expected = expected_from_db(conn, source, estimator)
    model, _ = save_model(tmp_path, estimator)
    stats = batch.BatchPredictor(model, batch_size=100).predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected, where=f"output table {target}")
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = %s ORDER BY ordinal_position", (target,)).fetchall()
        primary = conn.execute(
            "SELECT a.attname FROM pg_index x JOIN pg_attribute a "
            "ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) "
            "WHERE x.indrelid = %s::regclass AND x.indisprimary", (target,)).fetchall()
    assert dict(columns) == {"id": "bigint", "prediction": "double precision"}, (
        f"the output table should have the columns id bigint (the input key's type) and "
        f"prediction double precision; got {columns}"
    )
    assert primary == [("id",)], f"the output table's primary key should be the key column id; got {primary}"
    assert_stats(stats, what="predict_from_db", predicted=len(keys), missing=0)


@pytest.mark.points(2)
@pytest.mark.covers("db-dsn", "key-column", "feature-columns", "predict-input")
def test_db_key_and_feature_columns_are_honoured(batch, postgres, tmp_path):
    """A non-default key column and features given in another order than the table's."""
    features = ["c", "a", "b"]  # the model's order; the table stores a, b, c after a text column
    estimator = fitted_estimator()
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {} (customer_id integer PRIMARY KEY, note text, a float8, b float8, c float8)"
        ).format(sql.Identifier(source)))
        insert_rows(conn, source, range(500, 740), key="customer_id", features=features,
                    extra={"note": "text"})
        expected = expected_from_db(conn, source, estimator, key="customer_id", features=features)
    model, _ = save_model(tmp_path, estimator, features=features)
    dsn = f"host={postgres.host} port={postgres.port} user={postgres.user} " \
          f"password={postgres.password} dbname={postgres.database}"  # the key=value form
    batch.BatchPredictor(model, batch_size=64).predict_from_db(
        dsn, source, target, key_column="customer_id", feature_columns=features)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target, key="customer_id"), expected,
                           where=f"output table {target} (key customer_id, features {features})")
        (key_type,) = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s "
            "AND column_name = 'customer_id'", (target,)).fetchone()
    assert key_type == "integer", f"the output key column should have the input key's type (integer); got {key_type}"


@pytest.mark.points(1)
@pytest.mark.covers("features-default")
def test_db_features_default_to_every_other_column_in_table_order(batch, postgres, tmp_path):
    """Without feature_columns, the features are the table's other columns, in the table's order."""
    features = ["z", "x", "y"]  # the table's column order, which is not alphabetical
    estimator = fitted_estimator()
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, range(150), features=features)
        expected = expected_from_db(conn, source, estimator, features=features)
    model, _ = save_model(tmp_path, estimator, features=features)
    batch.BatchPredictor(model, batch_size=40).predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected,
                           where=f"output table {target} (features z, x, y by default)")


@pytest.mark.points(2)
@pytest.mark.covers("missing-policy", "stats-counts")
def test_db_rows_with_missing_features_get_a_null_prediction_and_are_counted(
        batch, estimator, postgres, tmp_path):
    """Rows with a NULL (or NaN) feature are not given to the model: NULL prediction, counted as missing."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        # 30 rows lack f2, 12 others lack f3, 6 others have a NaN f1: 48 missing, 252 scored.
        create_input(conn, source, range(300), nulls={"f2": "mod(i, 10) = 3", "f3": "mod(i, 25) = 0"},
                     nans={"f1": "mod(i, 50) = 17"})
        expected = expected_from_db(conn, source, estimator)
    assert sum(v is None for v in expected.values()) == 48
    model, log = save_model(tmp_path, estimator)
    stats = batch.BatchPredictor(model, batch_size=50).predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected,
                           where=f"output table {target} (a 'NaN' double precision counts as missing)")
    assert_stats(stats, what="predict_from_db on 300 rows, 42 of them with a NULL feature and 6 with a NaN",
                 predicted=252, missing=48, skipped=0)
    scored = sum(call["rows"] for call in read_log(log))
    assert scored == 252, f"the model should have been given the 252 complete rows; it got {scored}"


@pytest.mark.points(3)
@pytest.mark.covers("db-batch-size", "db-one-call", "commit-per-batch")
def test_db_reads_batch_size_rows_and_commits_each_batch(batch, estimator, postgres, tmp_path):
    """52 rows with gaps between keys, batch_size 7: predict gets 7, 7, ..., 3 rows, and batch k
    is committed before k+1 (a batch is 7 rows, not a range of 7 key values)."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, [5 * i + i % 3 for i in range(52)])  # 0, 6, 12, 15, 21, ...
    model, log = save_model(tmp_path, estimator, dsn=postgres.dsn, table=target)
    batch.BatchPredictor(model, batch_size=7).predict_from_db(postgres.dsn, source, target)
    calls = read_log(log)
    sizes = [c["rows"] for c in calls]
    assert sizes == [7] * 7 + [3], (
        f"with batch_size=7, predict should be called once per batch of 7 rows (the last one 3), "
        f"whatever the gaps between the keys (0, 6, 12, 15, 21, ...); got calls with {sizes} rows"
    )
    committed = [c["committed"] for c in calls]
    assert committed == [7 * k for k in range(8)], (
        "each batch should be committed before the next one is read: when predict was called "
        f"for batch 1, 2, 3, ... the output table should have held 0, 7, 14, ... committed rows; "
        f"it held {committed}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("batch-default")
def test_default_batch_size_is_1000(batch, estimator, postgres, tmp_path):
    """Without batch_size, batches hold 1,000 rows."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, range(2500))
    model, log = save_model(tmp_path, estimator)
    batch.BatchPredictor(model).predict_from_db(postgres.dsn, source, target)
    sizes = [c["rows"] for c in read_log(log)]
    assert sizes == [1000, 1000, 500], (
        f"with the default batch_size, 2,500 rows should be predicted in batches of 1000, 1000, 500; "
        f"got {sizes}"
    )


@pytest.mark.points(3)
@pytest.mark.covers("crash-raises", "commit-per-batch", "resume-skip", "stats-skipped")
def test_db_run_after_a_crash_resumes_and_scores_every_row_once(batch, estimator, postgres, tmp_path):
    """The model crashes on batch 5: 4 batches stay committed; a re-run scores only the rest."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, range(95))
        expected = expected_from_db(conn, source, estimator)
    crashing, _ = save_model(tmp_path, estimator, fail_at=4)
    with learner_error(Exception, what="predict_from_db with a model that fails on its 5th batch") as raised:
        batch.BatchPredictor(crashing, batch_size=10).predict_from_db(postgres.dsn, source, target)
    assert any("failed on purpose" in str(e) for e in error_chain(raised.value)), (
        f"the model's own error should reach the caller; got {type(raised.value).__name__}: {raised.value}"
    )
    with postgres.connect() as conn:
        kept = len(output_rows(conn, target))
    assert kept == 40, (
        f"after a crash on the 5th batch of 10 rows, the 4 batches before it should stay committed "
        f"(40 rows); the output table holds {kept}"
    )
    model, log = save_model(tmp_path, estimator)
    stats = batch.BatchPredictor(model, batch_size=10).predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected, where=f"output table {target} after the re-run")
    scored = sum(c["rows"] for c in read_log(log))
    assert scored == 55, f"the re-run should score only the 55 rows the crash left; the model got {scored} rows"
    assert_stats(stats, what="the re-run of predict_from_db", predicted=55, missing=0, skipped=40)


@pytest.mark.points(3)
@pytest.mark.covers("resume-skip", "output-existing", "stats-skipped", "one-row-per-key")
def test_db_rows_already_in_the_output_are_kept_and_not_scored_again(batch, estimator, postgres, tmp_path):
    """An existing output table keeps its rows; re-runs score only new input rows, never twice."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, range(60))
        conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, prediction double precision)").format(
            sql.Identifier(target)))
        # Scored by an earlier run (with other values, so overwriting them shows), one of them NULL.
        conn.execute(sql.SQL("INSERT INTO {} SELECT i, CASE WHEN i = 20 THEN NULL ELSE -999.0 END "
                             "FROM generate_series(0, 20) AS i").format(sql.Identifier(target)))
        # Rows of keys the input does not have (any more): kept, but not counted as skipped.
        conn.execute(sql.SQL("INSERT INTO {} SELECT i, -555.0 FROM generate_series(1000, 1006) AS i").format(
            sql.Identifier(target)))
        conn.commit()
        expected = expected_from_db(conn, source, estimator)
    expected.update({k: -999.0 for k in range(20)})
    expected[20] = None
    expected.update({k: -555.0 for k in range(1000, 1007)})
    model, log = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=16)
    first = predictor.predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected,
                           where=f"output table {target} (keys 0-20 and 1000-1006 were in it before the run)")
    assert_stats(first, what="predict_from_db with keys 0-20 (and 1000-1006, not input keys) "
                 "already in the output table", predicted=39, skipped=21)
    again = predictor.predict_from_db(postgres.dsn, source, target)
    assert_stats(again, what="a second predict_from_db on the same tables", predicted=0, missing=0, skipped=60)
    with postgres.connect() as conn:
        insert_rows(conn, source, range(60, 75))
        expected.update({k: v for k, v in expected_from_db(conn, source, estimator).items() if k >= 60})
    third = predictor.predict_from_db(postgres.dsn, source, target)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected,
                           where=f"output table {target} after 15 new input rows and a third run")
    assert_stats(third, what="predict_from_db after 15 new input rows", predicted=15, skipped=60)
    scored = sum(c["rows"] for c in read_log(log))
    assert scored == 39 + 15, (
        f"over the three runs the model should have scored 39 + 0 + 15 rows; it got {scored}"
    )


@pytest.mark.points(1)
@pytest.mark.covers("identifiers-quoted")
def test_db_names_with_capitals_and_spaces_work(batch, estimator, postgres, tmp_path):
    """Table and column names are quoted identifiers: capitals and spaces work."""
    source, target = f"Batch Input {uuid.uuid4().hex[:6]}", f"Batch Output {uuid.uuid4().hex[:6]}"
    features = ["Feature A", "feature b", "F3"]
    with postgres.connect() as conn:
        create_input(conn, source, range(30), key="Row ID", features=features)
        expected = expected_from_db(conn, source, estimator, key="Row ID", features=features)
    model, _ = save_model(tmp_path, estimator, features=features)
    batch.BatchPredictor(model, batch_size=8).predict_from_db(
        postgres.dsn, source, target, key_column="Row ID", feature_columns=features)
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target, key="Row ID"), expected,
                           where=f"output table {target!r} (key 'Row ID')")


@pytest.mark.points(2)
@pytest.mark.covers("db-missing-column")
@pytest.mark.parametrize("absent", ["key", "feature"])
def test_db_missing_column_is_named_and_nothing_is_written(batch, estimator, postgres, tmp_path, absent):
    """A key or feature column the table lacks: an error naming it, and no output row."""
    source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, source, range(20))
    model, _ = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=5)
    kwargs = ({"key_column": "customer_id"} if absent == "key"
              else {"feature_columns": ["f1", "f2", "f4"]})
    name = kwargs.get("key_column", "f4")
    with learner_error(what=f"predict_from_db with {kwargs} on a table without {name!r}") as raised:
        predictor.predict_from_db(postgres.dsn, source, target, **kwargs)
    assert name in str(raised.value), f"the error should name the missing column {name!r}; got {raised.value}"
    with postgres.connect() as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (target,)).fetchone()[0]
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(target))).fetchone()[0] if exists else 0
    assert rows == 0, f"no output row should be written when a column is missing; got {rows}"


# -- predict_from_files -----------------------------------------------------------------------


def file_table(keys, features=FEATURES, *, missing: dict[str, np.ndarray] | None = None,
               note: bool = False) -> pa.Table:
    """Key ``id`` (int64), an optional text column, then the features; ``missing[f]`` masks rows."""
    keys = np.asarray(keys, dtype=np.int64)
    columns = {"id": pa.array(keys)}
    if note:
        columns["note"] = pa.array([f"row {k}" for k in keys])
    for k, f in enumerate(features):
        mask = (missing or {}).get(f)
        columns[f] = pa.array(feature_values(keys, k), mask=mask)
    return pa.table(columns)


def write_input(table: pa.Table, path: Path, *, row_group_size: int | None = None) -> Path:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)  # a missing value is an empty field
    else:
        pq.write_table(table, path, row_group_size=row_group_size)
    return path


def expected_from_table(table: pa.Table, estimator, features=FEATURES, key: str = "id") -> list[tuple[int, float | None]]:
    """(key, expected prediction or None) in the input's order, from the data itself."""
    X = np.column_stack([table[f].to_numpy(zero_copy_only=False).astype(float) for f in features])
    complete = ~np.isnan(X).any(axis=1)
    predicted = np.full(len(X), np.nan)
    predicted[complete] = estimator.predict(X[complete])
    return [(int(k), None if math.isnan(p) else float(p))
            for k, p in zip(table[key].to_pylist(), predicted, strict=True)]


def read_output(path: Path, key: str = "id") -> list[tuple]:
    """(key, prediction or None) in file order, read with the csv module or pyarrow."""
    __tracebackhide__ = True
    assert path.is_file(), f"the output file {path.name} should exist after predict_from_files"
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows and rows[0] == [key, "prediction"], (
            f"a CSV output should start with the header row {key},prediction; got {rows[0] if rows else 'an empty file'}"
        )
        return [(int(float(k)), float(p) if p != "" else None) for k, p in rows[1:]]
    table = pq.read_table(path)
    assert key in table.column_names and "prediction" in table.column_names, (
        f"a Parquet output should have the columns {key!r} and 'prediction'; got {table.column_names}"
    )
    return list(zip(table[key].to_pylist(), table["prediction"].to_pylist(), strict=True))


def assert_file_output(path: Path, expected: list[tuple], *, where: str, key: str = "id") -> None:
    __tracebackhide__ = True
    got = read_output(path, key)
    got_keys, want_keys = [k for k, _ in got], [k for k, _ in expected]
    assert len(got) == len(expected), f"{where} should have {len(expected)} rows, one per input row; got {len(got)}"
    assert got_keys == want_keys, (
        f"{where} should list the input's keys in the input's order; the first ones should be "
        f"{want_keys[:5]}; got {got_keys[:5]}"
    )
    assert_predictions(got, dict(expected), where=where, rel=1e-9)


@pytest.mark.points(2)
@pytest.mark.covers("file-formats", "file-output", "csv-output", "feature-columns", "predict-input")
def test_csv_in_csv_out(batch, tmp_path):
    """CSV to CSV: header customer_id,prediction (the key_column given), the input's keys in its
    order, the model's values; an empty field in a column that is not a feature changes nothing."""
    features = ["f3", "f1", "f2"]  # the model's order, not the file's
    estimator = fitted_estimator()
    keys = np.random.default_rng(3).permutation(np.arange(1000, 1450))
    table = file_table(keys, note=True)  # columns: id, note, f1, f2, f3
    notes = pa.array([None if k % 6 == 1 else f"row {k}" for k in keys])  # empty fields, not a feature
    table = table.set_column(1, "note", notes).rename_columns(["customer_id", *table.column_names[1:]])
    source = write_input(table, tmp_path / "customers.csv")
    model, _ = save_model(tmp_path, estimator, features=features)
    batch.BatchPredictor(model, batch_size=128).predict_from_files(
        source, tmp_path / "scores.csv", key_column="customer_id", feature_columns=features)
    assert_file_output(tmp_path / "scores.csv", expected_from_table(table, estimator, features, key="customer_id"),
                       where="scores.csv (key_column='customer_id'; 'note' is not a feature, and empty in 75 rows)",
                       key="customer_id")


@pytest.mark.points(2)
@pytest.mark.covers("file-formats", "file-output", "parquet-types", "missing-policy")
def test_parquet_in_parquet_out(batch, estimator, tmp_path):
    """Parquet to Parquet: int64 key, float prediction, null where a feature is missing."""
    keys = np.arange(600)[::-1] * 7
    missing = {"f2": keys % 9 == 4, "f3": keys % 11 == 0}
    table = file_table(keys, missing=missing)
    source = write_input(table, tmp_path / "customers.parquet", row_group_size=250)
    model, _ = save_model(tmp_path, estimator)
    batch.BatchPredictor(model, batch_size=100).predict_from_files(source, tmp_path / "scores.parquet")
    out = pq.read_table(tmp_path / "scores.parquet")
    assert out.schema.field("id").type == pa.int64(), (
        f"the key column of a Parquet output should stay int64; got {out.schema.field('id').type}")
    assert pa.types.is_floating(out.schema.field("prediction").type), (
        f"the prediction column of a Parquet output should be a float column; got {out.schema.field('prediction').type}")
    assert_file_output(tmp_path / "scores.parquet", expected_from_table(table, estimator),
                       where="scores.parquet")
    nulls = out["prediction"].null_count
    assert nulls == int((missing["f2"] | missing["f3"]).sum()), (
        f"missing predictions should be Parquet nulls (not NaN); the column has {nulls} nulls")


@pytest.mark.points(2)
@pytest.mark.covers("format-mix", "file-formats")
@pytest.mark.parametrize("source_suffix, output_suffix", [(".csv", ".parquet"), (".parquet", ".csv")])
def test_input_and_output_formats_are_independent(batch, estimator, tmp_path, source_suffix, output_suffix):
    """CSV in, Parquet out, and the other way round."""
    table = file_table(np.arange(1, 321))
    source = write_input(table, tmp_path / f"in{source_suffix}")
    model, _ = save_model(tmp_path, estimator)
    output = tmp_path / f"out{output_suffix}"
    batch.BatchPredictor(model, batch_size=50).predict_from_files(source, output)
    assert_file_output(output, expected_from_table(table, estimator),
                       where=f"{output.name} (from {source.name})")


@pytest.mark.points(2)
@pytest.mark.covers("missing-policy", "stats-counts", "csv-output")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_rows_with_missing_features_are_counted(batch, estimator, tmp_path, suffix):
    """Missing features (empty CSV fields, Parquet nulls and NaN): missing prediction, counted."""
    keys = np.arange(400)
    missing = {"f1": keys % 8 == 1, "f3": keys % 13 == 5}
    table = file_table(keys, missing=missing)
    if suffix == ".parquet":  # a NaN is missing too, not only a null
        f2 = table["f2"].to_numpy().copy()
        f2[keys % 50 == 7] = np.nan
        table = table.set_column(table.column_names.index("f2"), "f2", pa.array(f2))
    n_missing = int((missing["f1"] | missing["f3"] | ((keys % 50 == 7) & (suffix == ".parquet"))).sum())
    source = write_input(table, tmp_path / f"in{suffix}")
    model, log = save_model(tmp_path, estimator)
    output = tmp_path / f"out{suffix}"
    stats = batch.BatchPredictor(model, batch_size=64).predict_from_files(source, output)
    expected = expected_from_table(table, estimator)
    assert sum(v is None for _, v in expected) == n_missing
    assert_file_output(output, expected, where=output.name)
    assert_stats(stats, what=f"predict_from_files on {len(keys)} rows, {n_missing} with a missing feature",
                 predicted=len(keys) - n_missing, missing=n_missing)
    assert sum(c["rows"] for c in read_log(log)) == len(keys) - n_missing, (
        "only complete rows should be given to the model")


@pytest.mark.points(1)
@pytest.mark.covers("features-default")
def test_file_features_default_to_every_other_column_in_file_order(batch, tmp_path):
    """Without feature_columns, the features are the file's other columns, in the file's order."""
    features = ["z", "x", "y"]
    estimator = fitted_estimator()
    table = file_table(np.arange(200), features=features)
    source = write_input(table, tmp_path / "in.parquet")
    model, _ = save_model(tmp_path, estimator, features=features)
    batch.BatchPredictor(model, batch_size=64).predict_from_files(source, tmp_path / "out.csv")
    assert_file_output(tmp_path / "out.csv", expected_from_table(table, estimator, features),
                       where="out.csv (features z, x, y by default)")


@pytest.mark.points(2)
@pytest.mark.covers("file-batch-size")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_predict_calls_hold_at_most_batch_size_rows(batch, estimator, tmp_path, suffix):
    """batch_size=300 on 2,000 rows (one Parquet row group): no predict call gets more than 300 rows."""
    table = file_table(np.arange(2000))
    source = write_input(table, tmp_path / f"in{suffix}", row_group_size=2000)
    model, log = save_model(tmp_path, estimator)
    batch.BatchPredictor(model, batch_size=300).predict_from_files(source, tmp_path / f"out{suffix}")
    sizes = [c["rows"] for c in read_log(log)]
    assert sizes and max(sizes) <= 300 and sum(sizes) == 2000, (
        f"with batch_size=300, predict should get at most 300 rows per call, 2,000 in all; "
        f"got calls with {sizes[:12]}{'...' if len(sizes) > 12 else ''} rows"
    )


@pytest.mark.points(1)
@pytest.mark.covers("file-overwrite")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_existing_output_file_is_replaced(batch, estimator, tmp_path, suffix):
    """An output file that exists already is replaced; two runs give the same file."""
    table = file_table(np.arange(250))
    source = write_input(table, tmp_path / f"in{suffix}")
    output = tmp_path / f"out{suffix}"
    write_input(file_table(np.arange(5000, 5400)), output)  # an older, longer file
    model, _ = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=100)
    predictor.predict_from_files(source, output)
    predictor.predict_from_files(source, output)
    assert_file_output(output, expected_from_table(table, estimator),
                       where=f"{output.name} (it existed before, and the run was repeated)")


@pytest.mark.points(2)
@pytest.mark.covers("unknown-suffix")
@pytest.mark.parametrize("which", ["input", "output"])
def test_unknown_suffix_is_refused_before_writing(batch, estimator, tmp_path, which):
    """A .json input or an .xlsx output: ValueError naming the suffix, before any predict call,
    and no output file; an .xlsx output is refused even when the input file does not exist."""
    table = file_table(np.arange(40))
    if which == "input":
        source, output = tmp_path / "in.json", tmp_path / "out.csv"
        source.write_text(json.dumps({"id": list(range(40))}))
        suffix = ".json"
    else:
        source, output = write_input(table, tmp_path / "in.csv"), tmp_path / "out.xlsx"
        suffix = ".xlsx"
    model, log = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=10)
    if which == "output":  # checked before the input is even opened
        absent = tmp_path / "no-such-input.csv"
        what = f"predict_from_files({absent.name!r}, {output.name!r}) (the input does not exist)"
        with learner_error(Exception, what=what) as raised:
            predictor.predict_from_files(absent, output)
        assert isinstance(raised.value, ValueError) and suffix in str(raised.value), (
            f"{what} should raise ValueError naming {suffix!r} before opening the input; "
            f"got {type(raised.value).__name__}: {raised.value}")
    with learner_error(ValueError, what=f"predict_from_files({source.name!r}, {output.name!r})") as raised:
        predictor.predict_from_files(source, output)
    assert suffix in str(raised.value), f"the error should name the suffix {suffix!r}; got {raised.value}"
    assert not output.exists(), f"{output.name} should not be written when a suffix is refused"
    calls = read_log(log)
    assert not calls, (f"a refused suffix should stop the run before anything is read; "
                       f"predict was called {len(calls)} times")


@pytest.mark.points(1)
@pytest.mark.covers("file-missing-columns")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_missing_columns_are_named(batch, estimator, tmp_path, suffix):
    """A feature column the file lacks: ValueError naming it."""
    source = write_input(file_table(np.arange(40)), tmp_path / f"in{suffix}")
    model, _ = save_model(tmp_path, estimator)
    what = f"predict_from_files on a {suffix} file without the column 'f9'"
    with learner_error(ValueError, what=what) as raised:
        batch.BatchPredictor(model, batch_size=10).predict_from_files(
            source, tmp_path / f"out{suffix}", feature_columns=["f1", "f9", "f3"])
    assert "f9" in str(raised.value), f"the error should name the missing column 'f9'; got {raised.value}"


@pytest.mark.points(1)
@pytest.mark.covers("model-once")
def test_model_is_loaded_once_in_the_constructor(batch, estimator, postgres, tmp_path):
    """After construction the model file is replaced, then removed: runs still use the model loaded first."""
    table = file_table(np.arange(120))
    source = write_input(table, tmp_path / "in.csv")
    model, _ = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=50)
    other = fitted_estimator()
    other.coef_ = -other.coef_  # another model, with other predictions
    joblib.dump(LoggedModel(other, FEATURES), model)
    try:
        predictor.predict_from_files(source, tmp_path / "out.csv")
    except OSError as exc:
        raise AssertionError(f"the model should be loaded once, in the constructor; predict_from_files "
                             f"read the model file again: {type(exc).__name__}: {exc}") from None
    assert_file_output(tmp_path / "out.csv", expected_from_table(table, estimator),
                       where="out.csv (the model file was replaced after the constructor loaded it)")
    model.unlink()
    db_source, target = table_name("in"), table_name("out")
    with postgres.connect() as conn:
        create_input(conn, db_source, range(80))
        expected = expected_from_db(conn, db_source, estimator)
    try:
        predictor.predict_from_db(postgres.dsn, db_source, target)
    except OSError as exc:
        raise AssertionError(f"the model should be loaded once, in the constructor; predict_from_db "
                             f"read the model file again after it was removed: "
                             f"{type(exc).__name__}: {exc}") from None
    with postgres.connect() as conn:
        assert_predictions(output_rows(conn, target), expected,
                           where=f"output table {target} (the model file was removed after loading)")


@pytest.mark.points(1)
@pytest.mark.covers("prediction-values")
@pytest.mark.filterwarnings("ignore:X has feature names")
def test_a_classifier_predicts_its_labels_not_probabilities(batch, tmp_path):
    """A plain scikit-learn classifier with labels 3 and 7: the prediction is predict's label."""
    from sklearn.linear_model import LogisticRegression

    keys = np.arange(300)
    X = np.column_stack([feature_values(keys, k) for k in range(3)])
    labels = np.where(X @ np.array([1.5, -2.0, 0.5]) > 0.3, 7, 3)
    classifier = LogisticRegression().fit(X, labels)
    model = tmp_path / "classifier.joblib"
    joblib.dump(classifier, model)
    table = file_table(keys)
    source = write_input(table, tmp_path / "in.csv")
    batch.BatchPredictor(model, batch_size=64).predict_from_files(source, tmp_path / "out.parquet")
    expected = [(int(k), float(p)) for k, p in zip(keys, classifier.predict(X), strict=True)]
    assert {p for _, p in expected} == {3.0, 7.0}
    assert_file_output(tmp_path / "out.parquet", expected,
                       where="out.parquet (a classifier: predict's labels 3 and 7, not probabilities)")


@pytest.mark.points(1)
@pytest.mark.covers("no-empty-predict", "db-one-call", "missing-policy")
@pytest.mark.parametrize("where", ["db", "files"])
def test_a_batch_without_complete_rows_calls_no_predict(batch, estimator, postgres, tmp_path, where):
    """40 rows in batches of 10; rows 0-19 lack f2: batches 1 and 2 need no predict call (and 0 rows would raise)."""
    keys = np.arange(40)
    model, log = save_model(tmp_path, estimator)
    predictor = batch.BatchPredictor(model, batch_size=10)
    what = f"predict_from_{where} on 40 rows in batches of 10, rows 0-19 without f2"
    if where == "db":
        source, target = table_name("in"), table_name("out")
        with postgres.connect() as conn:
            create_input(conn, source, keys, nulls={"f2": "i < 20"})
            expected = expected_from_db(conn, source, estimator)
        stats = predictor.predict_from_db(postgres.dsn, source, target)
        with postgres.connect() as conn:
            assert_predictions(output_rows(conn, target), expected, where=f"output table {target}")
    else:
        table = file_table(keys, missing={"f2": keys < 20})
        source = write_input(table, tmp_path / "in.csv")
        stats = predictor.predict_from_files(source, tmp_path / "out.csv")
        assert_file_output(tmp_path / "out.csv", expected_from_table(table, estimator), where="out.csv")
    assert_stats(stats, what=what, predicted=20, missing=20)
    sizes = [c["rows"] for c in read_log(log)]
    assert sizes == [10, 10], f"{what}: predict should get the 2 complete batches of 10 rows; got calls with {sizes} rows"


# -- big inputs, in a child process that measures peak memory ---------------------------------

DB_SMALL, DB_BIG = 20_000, 200_000
PARQUET_SMALL, PARQUET_BIG = 50_000, 500_000
# CSV: 100,000 then 1,000,000 rows (29 MB), because pyarrow's streaming CSV reader reads
# ahead up to some 30 MB of blocks: bounded, but a smaller file would be read ahead whole.
# Reading 1,000,000 rows whole with pandas needs some 120 MB; streaming designs under 45 MB.
CSV_SMALL, CSV_BIG = 100_000, 1_000_000
BIG_BATCH = 5000
MARGIN_MB = {"db": 12.0, "parquet": 12.0, "csv": 60.0}
# The read-ahead of pyarrow's CSV reader holds some 8 MB per worker thread: the child gets two
# threads, whatever the machine's cores, so that the measure and its margin do not depend on them.
CHILD_THREADS = {"OMP_NUM_THREADS": "2"}
DB_FEATURES = ["f1", "f2", "f3", "f4", "f5"]


def big_file_table(n: int, *, seed: int | None = None) -> pa.Table:
    """``n`` rows of five features: quarter steps from fixed formulas, or (with a seed) drawn
    floats, which no compression shrinks, so a Parquet file is as big on disk as in memory."""
    keys = np.arange(n, dtype=np.int64)
    if seed is None:
        return pa.table({"id": keys, **{f: feature_values(keys, k) for k, f in enumerate(DB_FEATURES)}})
    values = np.random.default_rng(seed).normal(size=(n, len(DB_FEATURES)))
    return pa.table({"id": keys, **{f: values[:, k] for k, f in enumerate(DB_FEATURES)}})


@pytest.fixture(scope="module")
def big_runs(postgres, target_dir, tmp_path_factory):
    """Run the learner's code on a 1x then a 10x input in a child process; read its report.

    The child runs a table, a Parquet file and a CSV file, each 1x then 10x, one after
    the other. It resets its peak-memory counter before each run, so ``peak - before``
    is what that run needed on top of what the process already held; the 1x run of
    each kind warms up what is loaded once (libraries, pools). The child runs with two
    worker threads (``CHILD_THREADS``) on every machine: pyarrow's bounded read-ahead grows
    with the number of threads, and the margins hold for two.
    """
    folder = tmp_path_factory.mktemp("big")
    estimator = fitted_estimator(len(DB_FEATURES))
    model = folder / "model.joblib"
    joblib.dump(LoggedModel(estimator, DB_FEATURES), model)
    tables = {"small": table_name("small"), "big": table_name("big")}
    with postgres.connect() as conn:
        create_input(conn, tables["small"], range(DB_SMALL), features=DB_FEATURES)
        create_input(conn, tables["big"], range(DB_BIG), features=DB_FEATURES)
    jobs = {"db": [{"kind": "db", "dsn": postgres.dsn, "input_table": tables[s],
                    "output_table": tables[s] + "_out"} for s in ("small", "big")]}
    inputs = {}
    for kind, sizes in (("parquet", (PARQUET_SMALL, PARQUET_BIG)), ("csv", (CSV_SMALL, CSV_BIG))):
        jobs[kind] = []
        for label, n in zip(("small", "big"), sizes, strict=True):
            path = folder / f"{label}.{kind}"
            if kind == "csv":
                table = big_file_table(n)
                pacsv.write_csv(table, path)
            else:  # incompressible values: reading the file ahead costs as much as decoding it
                table = big_file_table(n, seed=n)
                pq.write_table(table, path, row_group_size=10_000)
            inputs[(kind, label)] = table
            jobs[kind].append({"kind": "files", "input": str(path), "output": str(folder / f"{label}_out.{kind}")})
    spec = {"target": str(target_dir), "model": str(model), "batch_size": BIG_BATCH,
            "jobs": [job for kind in ("db", "parquet", "csv") for job in jobs[kind]],
            "result": str(folder / "result.json")}
    (folder / "spec.json").write_text(json.dumps(spec))
    # A copy of the support module beside the spec: the learner's program (under sealed
    # grading, as the sandbox user) never sees graders/. It writes its outputs in ``folder``.
    support = folder / SUPPORT.name
    support.write_bytes(SUPPORT.read_bytes())
    try:
        child = run_learner_program([sys.executable, str(support), str(folder / "spec.json")],
                                    cwd=folder, reads=(target_dir / "ce3_4",),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=150,
                                    env={**os.environ, **CHILD_THREADS})
        result = (json.loads((folder / "result.json").read_text()) if (folder / "result.json").is_file()
                  else {"error": f"the child process exited with {child.returncode}: {child.stderr[-1500:]}"})
    except subprocess.TimeoutExpired:
        result = {"error": "the runs did not finish within 150 s"}
    runs = result.get("runs", [])
    results = {kind: {**result, "runs": runs[2 * k:2 * k + 2]}
               for k, kind in enumerate(("db", "parquet", "csv"))}
    return {"results": results, "jobs": jobs, "tables": tables, "inputs": inputs, "estimator": estimator}


def runs_of(big_runs, kind: str) -> list[dict]:
    """The two runs of one kind, or the failure that stopped them."""
    __tracebackhide__ = True
    result = big_runs["results"][kind]
    if "not_started" in result:
        raise NotImplementedError(result["not_started"])
    assert "error" not in result, (
        f"the runs in a child process failed: {result['error']}\n{result.get('traceback', '')}")
    runs = result["runs"]
    assert len(runs) == 2, f"the child process stopped before the {kind} runs"
    for run in runs:
        if "not_started" in run:
            raise NotImplementedError(run["not_started"])
        assert "error" not in run, f"the {kind} run in a child process failed: {run['error']}\n{run['traceback']}"
    return runs


def assert_flat_memory(runs: list[dict], *, what: str, kind: str, small: int, big: int) -> None:
    __tracebackhide__ = True
    growth = [r["peak_mb"] - r["before_mb"] for r in runs]
    margin = MARGIN_MB[kind]
    assert growth[1] < margin, (
        f"{what}: memory should not grow with the input. After a run on {small:,} rows, a run on "
        f"{big:,} rows should need less than {margin:g} MB more than the process held before it; "
        f"it needed {growth[1]:.1f} MB (the {small:,}-row run needed {growth[0]:.1f} MB). "
        f"Read {BIG_BATCH} rows at a time instead of the whole input"
        + (" (pyarrow's ParquetFile reads the whole file ahead unless told pre_buffer=False)."
           if "parquet" in what else ".")
    )


@pytest.mark.points(3)
@pytest.mark.covers("one-row-per-key", "prediction-values", "stats-counts")
@pytest.mark.timeout(180)
def test_db_200000_rows_are_each_predicted_once(big_runs, postgres):
    """200,000 rows (and 20,000 before them): every row once in the output, with the model's value."""
    runs = runs_of(big_runs, "db")
    for label, n, run in zip(("small", "big"), (DB_SMALL, DB_BIG), runs, strict=True):
        source = big_runs["tables"][label]
        with postgres.connect() as conn:
            expected = expected_from_db(conn, source, big_runs["estimator"], features=DB_FEATURES)
            assert_predictions(output_rows(conn, source + "_out"), expected,
                               where=f"the output of {n:,} rows")
        assert_stats(run["stats"], what=f"predict_from_db on {n:,} rows", predicted=n, missing=0)


@pytest.mark.points(3)
@pytest.mark.covers("db-streaming")
@pytest.mark.timeout(180)
def test_db_memory_does_not_grow_with_the_table(big_runs):
    """Peak memory of a 200,000-row table run is that of a 20,000-row one (a server-side cursor or keyset pages)."""
    assert_flat_memory(runs_of(big_runs, "db"), what="predict_from_db", kind="db", small=DB_SMALL, big=DB_BIG)


@pytest.mark.points(3)
@pytest.mark.covers("file-streaming", "file-output")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_file_memory_does_not_grow_with_the_input(big_runs, kind):
    """Peak memory of a 10x bigger file is that of the small one; the big output is still right."""
    runs = runs_of(big_runs, kind)
    small, big = (PARQUET_SMALL, PARQUET_BIG) if kind == "parquet" else (CSV_SMALL, CSV_BIG)
    job = big_runs["jobs"][kind][1]
    assert_big_file_output(Path(job["output"]), big_runs["inputs"][(kind, "big")], big_runs["estimator"],
                           where=f"the output of {big:,} {kind} rows")
    assert_flat_memory(runs, what=f"predict_from_files on {kind}", kind=kind, small=small, big=big)


def assert_big_file_output(path: Path, table: pa.Table, estimator, *, where: str) -> None:
    """The big output, read with pyarrow (values parsed as numbers) and compared as arrays."""
    __tracebackhide__ = True
    assert path.is_file(), f"the output file {path.name} should exist after predict_from_files"
    if path.suffix == ".csv":
        options = pacsv.ConvertOptions(column_types={"id": pa.float64(), "prediction": pa.float64()})
        out = pacsv.read_csv(path, convert_options=options)
    else:
        out = pq.read_table(path)
    assert out.column_names == ["id", "prediction"], (
        f"{where} should have the columns id and prediction; got {out.column_names}")
    keys = table["id"].to_numpy()
    X = np.column_stack([table[f].to_numpy() for f in DB_FEATURES])
    want = estimator.predict(X)
    assert out.num_rows == len(keys), f"{where} should have {len(keys):,} rows, one per input row; got {out.num_rows:,}"
    got_keys = out["id"].to_numpy(zero_copy_only=False).astype(float)
    wrong = np.flatnonzero(got_keys != keys)
    assert not len(wrong), (f"{where} should list the input's keys in the input's order; row {wrong[0]} "
                            f"should have key {keys[wrong[0]]}; got {got_keys[wrong[0]]:g}")
    got = out["prediction"].to_numpy(zero_copy_only=False).astype(float)
    wrong = np.flatnonzero(~np.isclose(got, want, rtol=1e-9, atol=1e-9))
    assert not len(wrong), (f"{where}: the prediction of key {keys[wrong[0]]} should be the model's "
                            f"{want[wrong[0]]!r}; got {got[wrong[0]]!r}")
