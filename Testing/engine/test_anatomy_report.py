"""The anatomy report's choice of the confidence threshold, from the validation sweep rows."""

from __future__ import annotations

from morse.experiments.anatomy import confidence_verdict


def _row(t, dsc_all):
    return {"min_confidence": t, "mean_dsc_all": dsc_all}


def test_the_rule_stays_off_when_every_threshold_lowers_the_dsc():
    rows = [_row(None, 0.71), _row(0.0, 0.723), _row(0.3, 0.646), _row(0.5, 0.627)]
    assert "keeps `min_confidence` at 0" in confidence_verdict(rows)
    assert confidence_verdict(rows).startswith("Every threshold above 0 lowers the mean DSC")


def test_thresholds_that_change_nothing_are_not_said_to_lower_the_dsc():
    rows = [_row(None, 0.817), _row(0.0, 0.819), _row(0.3, 0.819), _row(0.6, 0.819), _row(0.7, 0.709)]
    verdict = confidence_verdict(rows)
    assert verdict.startswith("Thresholds up to 0.6 leave the mean DSC on these cases as it is and higher ones lower")
    assert "keeps `min_confidence` at 0" in verdict


def test_the_best_threshold_is_named_and_ties_go_to_the_lower_one():
    rows = [_row(None, 0.80), _row(0.0, 0.70), _row(0.3, 0.75), _row(0.5, 0.75)]
    assert confidence_verdict(rows) == "Best on these cases: `min_confidence` 0.3 (mean DSC, all organs, 0.750)."
