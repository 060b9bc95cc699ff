"""The results vocabulary: one outcome rule, and rows of earlier studies read in today's names."""

from __future__ import annotations

import pytest

from medguna.results import (
    COMPLETED,
    OBJECTIVE_BEST_SO_FAR,
    OBJECTIVE_SELECTED,
    TrialOutcome,
    classify_outcome,
    optuna_outcome,
    outcome_of,
    upgrade_row,
)


@pytest.mark.parametrize(("failed", "final", "epochs_run", "epochs", "expected"), [
    (True, True, 3, 3, TrialOutcome.FAILED),  # an error beats a final row
    (False, True, 3, 3, TrialOutcome.COMPLETED),
    (False, False, 1, 3, TrialOutcome.STOPPED_EARLY),
    (False, False, 3, 3, TrialOutcome.INCOMPLETE),  # every epoch but no final row: interrupted
    (False, False, None, 3, TrialOutcome.INCOMPLETE),  # nothing reported
    (False, False, 1, None, TrialOutcome.INCOMPLETE),  # no budget known
])
def test_one_rule_classifies_every_outcome(failed, final, epochs_run, epochs, expected):
    assert classify_outcome(failed=failed, final=final, epochs_run=epochs_run, epochs=epochs) is expected


def test_outcome_from_the_last_reported_row():
    assert outcome_of({"epoch": 2, "status": "completed"}, failed=False, epochs=2) == "completed"
    assert outcome_of({"epoch": 1}, failed=False, epochs=2) == "stopped_early"
    assert outcome_of(None, failed=True, epochs=2) == "failed"
    assert outcome_of({}, failed=False, epochs=2) == "incomplete"


def test_earlier_rows_and_exports_are_read_in_todays_names():
    epoch = upgrade_row({"epoch": 1, "objective_value": 0.6, "method_variant": "reference"})
    assert epoch == {"epoch": 1, OBJECTIVE_BEST_SO_FAR: 0.6, "variant": "reference"}
    final = upgrade_row({"epoch": 2, "status": "completed", "objective_value": 0.7})
    assert final[OBJECTIVE_SELECTED] == final[OBJECTIVE_BEST_SO_FAR] == 0.7 and "objective_value" not in final
    # The paper's point was tagged is_reference_config, though it is not the reference variant.
    assert upgrade_row({"epoch": 1, "is_reference_config": True}) == {"epoch": 1, "is_paper_point": True}
    assert optuna_outcome({"budget": "full"}) == COMPLETED
    assert optuna_outcome({"budget": "stopped_early"}) == "stopped_early"
    assert optuna_outcome({"outcome": "failed", "budget": "full"}) == "failed"
