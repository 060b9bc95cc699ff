"""The live Optuna database: written as trials run, kept whole across a resume, opened by
optuna-dashboard. Driven through Tune's callback hooks with stand-in trials."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest

from medguna.study.optuna_storage import OptunaRecorder, study_name, sync_results
from medguna.study.space import PAPER_POINT_VALUES

SPACE = {"adapter_width": {"type": "categorical", "choices": [0, 64]},
         "entropy_weight": {"type": "float", "low": -1.5, "high": 3.0}}
State = optuna.trial.TrialState


def trial(n: int, tmp_path, **config):
    # Trial 1 runs the paper's hyperparameters, as a study's first trial does.
    point = dict(PAPER_POINT_VALUES) if n == 1 else {"adapter_width": 64, "entropy_weight": 0.5 * n}
    return SimpleNamespace(trial_id=f"id{n}", config={**point, "seed": 7, **config},
                           last_result={}, path=str(tmp_path / "montgomery" / f"t{n:04d}_id{n}"),
                           error_file=None, status="RUNNING")


def epoch(recorder, t, n: int, value: float, final: bool = False) -> None:
    row = {"epoch": n, "objective_best_so_far": value, "trial_id": t.trial_id}
    if final:
        row.update(status="completed", selected_epoch=0, test_balanced_accuracy=0.75,
                   zeroshot_test_balanced_accuracy=0.6875)
    t.last_result = row
    recorder.on_trial_result(n, [t], t, row)


def recorder(tmp_path, confirm: bool = False) -> OptunaRecorder:
    return OptunaRecorder(str(tmp_path / "montgomery"), "montgomery" + ("_confirm" if confirm else ""),
                          study_name("chestxray", "montgomery", confirm), SPACE, "objective_best_so_far",
                          "val_balanced_accuracy", epochs=2)


def stored(tmp_path, name="chestxray-montgomery") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'montgomery' / 'optuna.db'}").trials


def test_trials_are_recorded_as_they_run_and_kept_across_a_resume(tmp_path):
    rec = recorder(tmp_path)
    t1, t2, t3 = trial(1, tmp_path), trial(2, tmp_path), trial(3, tmp_path)
    for t in (t1, t2, t3):
        rec.on_trial_start(0, [], t)
    # While they run, the database already holds them, RUNNING, with each epoch's value.
    epoch(rec, t1, 1, 0.60)
    live = stored(tmp_path)
    assert [t.state for t in live] == [State.RUNNING] * 3 and live[0].intermediate_values == {1: 0.60}
    epoch(rec, t1, 2, 0.70, final=True)
    rec.on_trial_complete(0, [], t1)
    epoch(rec, t2, 1, 0.55)  # ASHA stops it after epoch 1 of 2
    rec.on_trial_complete(0, [], t2)

    # The driver is killed; Tune restores the experiment with a new recorder from tuner.pkl, and
    # starts the trials that were running (t3) and finished ones' hooks may fire again (t1).
    rec = pickle.loads(pickle.dumps(rec))
    rec.on_trial_start(0, [], t3)
    rec.on_trial_start(0, [], t1)
    epoch(rec, t1, 1, 0.10)  # a finished trial is never rewritten
    epoch(rec, t3, 1, 0.65)
    t3.error_file = None
    rec.on_trial_error(0, [], t3)

    trials = stored(tmp_path)
    assert [t.state for t in trials] == [State.COMPLETE, State.PRUNED, State.FAIL]
    assert trials[0].value == 0.70 and trials[0].intermediate_values == {1: 0.60, 2: 0.70}
    assert trials[1].intermediate_values == {1: 0.55} and trials[2].intermediate_values == {1: 0.65}
    for t in trials:  # real times: started when Tune started it, completed when it ended
        assert t.datetime_start < t.datetime_complete
    assert trials[0].params == {"adapter_width": 0, "entropy_weight": 1.5}
    assert trials[0].user_attrs == {
        "medguna_trial": "t0001", "trial_folder": str(tmp_path / "montgomery" / "t0001_id1"),
        "tensorboard_run": "montgomery/t0001_id1", "paper_point": True, "outcome": "completed",
        "selected_epoch": 0, "test_balanced_accuracy": 0.75, "zeroshot_test_balanced_accuracy": 0.6875,
        "seed": 7, "tune_trial_id": "id1"}
    assert trials[1].user_attrs["outcome"] == "stopped_early" and not trials[1].user_attrs["paper_point"]
    assert trials[2].user_attrs["outcome"] == "failed"
    study = optuna.load_study(study_name="chestxray-montgomery",
                              storage=f"sqlite:///{tmp_path / 'montgomery' / 'optuna.db'}")
    assert "user attribute `medguna_trial`" in study.user_attrs["about"]
    assert study.metric_names == ["val_balanced_accuracy"]


def test_the_confirmation_is_a_study_of_its_own_in_the_same_database(tmp_path):
    search, confirm = recorder(tmp_path), recorder(tmp_path, confirm=True)
    t1, c1 = trial(1, tmp_path), trial(9, tmp_path, seed=7778)
    search.on_trial_start(0, [], t1)
    confirm.on_trial_start(0, [], c1)
    epoch(confirm, c1, 1, 0.7, final=True)
    confirm.on_trial_complete(0, [], c1)
    assert set(optuna.get_all_study_names(f"sqlite:///{tmp_path / 'montgomery' / 'optuna.db'}")) == {
        "chestxray-montgomery", "chestxray-montgomery-confirm"}
    (confirmed,) = stored(tmp_path, "chestxray-montgomery-confirm")
    assert confirmed.state == State.COMPLETE and confirmed.user_attrs["seed"] == 7778
    assert confirmed.user_attrs["tensorboard_run"] == "montgomery_confirm/t0009_id9"
    assert [t.state for t in stored(tmp_path)] == [State.RUNNING]


def test_sync_adds_only_what_the_database_lacks(tmp_path):
    rec = recorder(tmp_path)
    t1 = trial(1, tmp_path)
    rec.on_trial_start(0, [], t1)
    epoch(rec, t1, 1, 0.6)
    before = stored(tmp_path)[0]

    def result(t, rows, error=None):
        return SimpleNamespace(metrics={**rows[-1], "trial_id": t.trial_id}, config=t.config, error=error,
                               path=t.path, metrics_dataframe=pd.DataFrame(rows))

    base = dt.datetime(2026, 12, 6, 12, 0).timestamp()
    rows1 = [{"epoch": 1, "objective_best_so_far": 0.6, "timestamp": base + 10, "time_this_iter_s": 10.0},
             {"epoch": 2, "objective_best_so_far": 0.7, "timestamp": base + 20, "time_this_iter_s": 10.0,
              "status": "completed"}]
    t2 = trial(2, tmp_path)
    rows2 = [{"epoch": 1, "objective_best_so_far": 0.5, "timestamp": base + 30, "time_this_iter_s": 12.0}]
    added = sync_results(str(tmp_path / "montgomery"), "montgomery", "chestxray-montgomery", SPACE,
                         [result(t1, rows1), result(t2, rows2)], "objective_best_so_far", epochs=2)
    assert added == 1  # t2 only: t1 was recorded live and is finished, not replaced
    first, second = stored(tmp_path)
    assert first.datetime_start == before.datetime_start and first.state == State.COMPLETE
    assert first.intermediate_values == {1: 0.6} and first.value == 0.7
    assert second.state == State.PRUNED and second.intermediate_values == {1: 0.5}
    assert second.datetime_start == dt.datetime.fromtimestamp(base + 18)
    assert second.datetime_complete == dt.datetime.fromtimestamp(base + 30)


def test_a_trial_stopped_by_ctrl_c_stays_running_for_its_resume(tmp_path):
    rec = recorder(tmp_path)
    t1 = trial(1, tmp_path)
    rec.on_trial_start(0, [], t1)
    epoch(rec, t1, 1, 0.6)
    # Ctrl-C: Tune returns with t1 saved as RUNNING; its last result is not a final row.
    interrupted = SimpleNamespace(metrics={"epoch": 1, "objective_best_so_far": 0.6, "trial_id": "id1"},
                                  config=t1.config, error=None, path=t1.path, metrics_dataframe=None)
    sync_results(str(tmp_path / "montgomery"), "montgomery", "chestxray-montgomery", SPACE,
                 [interrupted], "objective_best_so_far", epochs=2, finished=set())
    (kept,) = stored(tmp_path)
    assert kept.state == State.RUNNING and kept.intermediate_values == {1: 0.6}
    # Resumed, it finishes in the same record.
    rec = pickle.loads(pickle.dumps(rec))
    rec.on_trial_start(0, [], t1)
    epoch(rec, t1, 2, 0.7, final=True)
    rec.on_trial_complete(0, [], t1)
    (done,) = stored(tmp_path)
    assert done.state == State.COMPLETE and done.intermediate_values == {1: 0.6, 2: 0.7}


def test_optuna_dashboard_loads_the_study(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="the `dashboard` extra is not installed")
    from optuna_dashboard import wsgi

    rec = recorder(tmp_path)
    t1 = trial(1, tmp_path)
    rec.on_trial_start(0, [], t1)
    epoch(rec, t1, 1, 0.6)
    epoch(rec, t1, 2, 0.7, final=True)
    rec.on_trial_complete(0, [], t1)
    app = wsgi(f"sqlite:///{tmp_path / 'montgomery' / 'optuna.db'}")

    def get(path: str) -> dict:
        from wsgiref.util import setup_testing_defaults

        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "after=0"}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = app(environ, lambda s, headers, exc_info=None: status.append(s))
        assert status[0].startswith("200"), status
        return json.loads(b"".join(body))

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "chestxray-montgomery"
    detail = get(f"/api/studies/{summary['study_id']}")
    (loaded,) = detail["trials"]
    assert loaded["state"] == "Complete" and loaded["values"] == [0.7]
    assert [v["value"] for v in loaded["intermediate_values"]] == [0.6, 0.7]
    assert {a["key"]: a["value"] for a in loaded["user_attrs"]}["medguna_trial"] == "t0001"
