"""Search spaces as data -> Optuna suggestions; the paper's point enqueued first."""

import optuna

from medguna.config import MethodConfig
from medguna.study.space import define_by_run, fixed_params, is_paper_point, paper_point

SPACE = {
    "adapter_width": {"type": "categorical", "choices": [0, 64]},
    "entropy_weight": {"type": "float", "low": 0.0, "high": 3.0},
    "prompt_length": {"type": "int", "low": 0, "high": 200, "step": 1},
    "stage2_lr": {"type": "log", "low": 1e-5, "high": 1e-2},
}


def test_define_by_run_suggests_each_distribution_and_returns_the_fixed_rest():
    constants = fixed_params(MethodConfig(), SPACE, dataset="idrid")
    assert "adapter_width" not in constants and constants["ce_weight"] == 0.7
    assert constants["dataset"] == "idrid"
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    fn = define_by_run(SPACE, constants)
    for _ in range(20):
        trial = study.ask()
        assert fn(trial) == constants
        p = trial.params
        assert p["adapter_width"] in (0, 64)
        assert 0.0 <= p["entropy_weight"] <= 3.0
        assert isinstance(p["prompt_length"], int) and 0 <= p["prompt_length"] <= 200
        assert 1e-5 <= p["stage2_lr"] <= 1e-2
        study.tell(trial, 0.0)
    dists = study.trials[0].distributions
    assert dists["stage2_lr"].log is True


def test_paper_point_only_when_the_space_can_express_it():
    assert paper_point({"prompt_length": {"type": "categorical", "choices": [0, 113]},
                            "entropy_weight": {"type": "float", "low": 0, "high": 2}}) == {
        "prompt_length": 113, "entropy_weight": 1.5}
    assert paper_point({"prompt_length": {"type": "categorical", "choices": [0, 8]}}) is None
    # Stage-2 dimensions have paper values too (SGD at 5e-4 on the reference's views) ...
    assert paper_point({"stage2_lr": {"type": "log", "low": 1e-4, "high": 1e-2},
                            "stage2_optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
                            "strong_view_augmentation": {"type": "categorical", "choices": ["reference", "crop_flip"]}}) == {
        "stage2_lr": 5e-4, "stage2_optimizer": "sgd", "strong_view_augmentation": "reference"}
    assert paper_point({"stage2_lr": {"type": "log", "low": 1e-3, "high": 1e-2}}) is None
    # ... but not every hyperparameter does.
    assert paper_point({"ce_weight": {"type": "float", "low": 0.1, "high": 1.0}}) is None


def test_is_paper_point():
    paper = {"adapter_width": 0, "entropy_weight": 1.5, "prompt_length": 113, "description_source": "curated+templates"}
    assert is_paper_point({**paper, "seed": 1})
    assert not is_paper_point({**paper, "prompt_length": 8})
    # Unnamed stage-2 dimensions run at the paper's values; named ones must match them.
    assert is_paper_point({**paper, "stage2_lr": 5e-4, "stage2_optimizer": "sgd"})
    assert not is_paper_point({**paper, "stage2_optimizer": "adamw"})
    assert not is_paper_point({k: v for k, v in paper.items() if k != "prompt_length"})
    # A budget that fixes stage 2 for every trial (the demonstration's AdamW at 1e-3) keeps the paper's
    # design point the paper's point; a searched stage-2 value off the paper's still is not.
    demo = {"stage2_optimizer": "adamw", "stage2_lr": 1e-3}
    assert is_paper_point({**paper, **demo}, fixed=demo)
    assert not is_paper_point({**paper, **demo}, fixed={"stage2_optimizer": "sgd", "stage2_lr": 5e-4})
    assert not is_paper_point({**paper, "stage2_lr": 3e-3}, fixed=demo)
