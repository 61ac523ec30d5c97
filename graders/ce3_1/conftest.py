"""Fixtures of the CE3.1 graders: the fleet of uvicorn servers (see ce3_1_support.py)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import joblib
import pytest
from ce3_1_support import (
    MAIN_MAX_BATCH,
    MAIN_MAX_BODY,
    MAIN_NAME,
    MAIN_RATE_LIMIT,
    MAIN_VERSION,
    MAIN_WINDOW,
    REDIS_WINDOW,
    REDIS_WINDOW_LIMIT,
    SETTINGS,
    SHARED_RATE_LIMIT,
    SPY_LOG_VARIABLE,
    SPY_MODULE,
    Fleet,
    KeyPool,
    roles_used,
    train_models,
    write_spy,
)

from workbook.checks import require_started
from workbook.services.base import free_port, make_tempdir, remove_tree


@pytest.fixture(scope="module")
def started(target_dir: Path, exercise_id: str) -> Path:
    """The learner's folder, once app.py is no longer the untouched starter file."""
    folder = target_dir / exercise_id
    require_started(exercise_id, folder, ["app.py"])
    return folder


@pytest.fixture(scope="module")
def fleet(started: Path, redis, request):
    """The servers, started when first used; each check waits only for the servers it uses."""
    folder = make_tempdir("ce3_1-grader")
    fleet = None
    try:
        main_model, plain_model, swapped = train_models(folder)
        main_dir, plain_1_dir, plain_2_dir, missing_dir, no_redis_dir = (
            folder / name for name in ("main", "plain_1", "plain_2", "missing", "no_redis"))
        for d in (main_dir, plain_1_dir, plain_2_dir, missing_dir, no_redis_dir):
            d.mkdir()
        joblib.dump(main_model, main_dir / "classifier.joblib")
        joblib.dump(plain_model, plain_1_dir / "model.pkl")
        for d in (plain_2_dir, no_redis_dir):
            shutil.copy(plain_1_dir / "model.pkl", d / "model.pkl")
        fleet = Fleet(folder, main_model, plain_model, (plain_1_dir / "model.pkl").read_bytes())
        fleet.keys = {"main": KeyPool("main", 800), "plain": KeyPool("plain", 120),
                      "other": KeyPool("other", 40)}
        fleet.env_keys = [f"env-{secrets.token_hex(6)}-a", f"env-{secrets.token_hex(6)}-b"]
        fleet.file_keys = fleet.keys["main"].keys
        keys_file = main_dir / "keys.txt"
        keys_file.write_text(
            "# API keys of the CE3.1 graders: comments and blank lines are not keys\n\n"
            + "\n".join(f"  {k}  " if i % 7 == 0 else k for i, k in enumerate(fleet.file_keys))
            + "\n\n# the end\n", encoding="utf-8")
        main_env = {
            "MODEL_PATH": str(main_dir / "classifier.joblib"), "MODEL_NAME": MAIN_NAME,
            "MODEL_VERSION": MAIN_VERSION, "API_KEYS": f" {fleet.env_keys[0]} , {fleet.env_keys[1]} ",
            "API_KEYS_FILE": str(keys_file), "RATE_LIMIT": str(MAIN_RATE_LIMIT),
            "RATE_LIMIT_WINDOW": f"{MAIN_WINDOW:g}", "MAX_BODY_BYTES": str(MAIN_MAX_BODY),
            "MAX_BATCH_SIZE": str(MAIN_MAX_BATCH),
        }
        plain_env = {"API_KEYS": ",".join(fleet.keys["plain"].keys), "REDIS_URL": redis.url,
                     "RATE_LIMIT": str(SHARED_RATE_LIMIT)}
        other_keys = ",".join(fleet.keys["other"].keys)
        roles = {
            "main": (main_dir, main_env),
            "plain_1": (plain_1_dir, plain_env),
            "plain_2": (plain_2_dir, plain_env),
            "missing": (missing_dir, {"MODEL_PATH": str(missing_dir / "absent.pkl"), "API_KEYS": other_keys}),
            "no_redis": (no_redis_dir, {"API_KEYS": other_keys, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}),
        }
        # Servers of one check each, with the main model (a copy in their own folder).
        fleet.role_keys = {role: f"{role.replace('_', '-')}-{secrets.token_hex(8)}"
                           for role in ("redis_window", "spy", "empty", "defaults")}
        single = {
            "redis_window": {"API_KEYS": fleet.role_keys["redis_window"], "REDIS_URL": redis.url,
                             "RATE_LIMIT": str(REDIS_WINDOW_LIMIT), "RATE_LIMIT_WINDOW": f"{REDIS_WINDOW:g}"},
            "spy": {"API_KEYS": f"other-{secrets.token_hex(4)},{fleet.role_keys['spy']}"},
            "empty": {**{name: "" for name in SETTINGS if name not in ("MODEL_PATH", "API_KEYS")},
                      "API_KEYS": fleet.role_keys["empty"]},
            "no_keys": {},
            "defaults": {"API_KEYS": fleet.role_keys["defaults"]},
        }
        for role, env in single.items():
            role_dir = folder / role
            role_dir.mkdir()
            shutil.copy(main_dir / "classifier.joblib", role_dir / "classifier.joblib")
            roles[role] = (role_dir, {"MODEL_PATH": str(role_dir / "classifier.joblib"), **env})
        write_spy(folder)
        fleet.spy_log = folder / "spy" / "compare_digest.log"
        roles["spy"][1][SPY_LOG_VARIABLE] = str(fleet.spy_log)
        fleet.apps["spy"] = f"{SPY_MODULE}:app"
        fleet.app_dir, fleet.pending = started, roles
        fleet.wanted = roles_used(request.session.items)
        # The main server now; the others (used by the last checks) on first use, together,
        # so a grading run stopped early by -x pays for one server only.
        fleet.start("main")
        fleet.swap_plain_model = lambda: joblib.dump(swapped, plain_1_dir / "model.pkl")
        yield fleet
    finally:
        if fleet is not None:
            for server in fleet.servers.values():
                server.terminate()  # all at once: each shuts down while the next is asked to
            for server in fleet.servers.values():
                server.stop()
        remove_tree(folder)
