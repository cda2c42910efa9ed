"""benchmarks/table2.py's arithmetic: the AUC standard error and the table, on made-up runs."""

import pytest

from benchmarks import table2


def test_hanley_mcneil_standard_error_by_hand():
    # A = 0.5, 10 positives, 10 negatives: Q1 = Q2 = 1/3,
    # var = (0.25 + 9 * (1/3 - 1/4) + 9 * (1/3 - 1/4)) / 100 = 0.0175.
    assert table2.auc_standard_error(0.5, 10, 10) == pytest.approx(0.0175 ** 0.5)
    assert table2.auc_standard_error(0.8, 1000, 9000) < table2.auc_standard_error(0.8, 10, 90)
    assert table2.auc_standard_error(0.7, 0, 10) is None


def _row(model, plugin, window, seed, click, order=0.6):
    return {"model": model, "plugin": plugin, "window": window, "seed": seed, "examples": 100,
            "click": {"auc": click, "p@2": 0.3, "positives": 10, "auc_se": 0.05},
            "order": {"auc": order, "p@2": 0.1, "positives": 2, "auc_se": 0.1}}


def test_table_and_hypotheses_from_made_up_runs():
    rows = []
    for seed, jitter in ((0, 0.0), (1, 0.02)):
        rows += [_row("din", False, "train_small", seed, 0.60 + jitter),
                 _row("din", True, "train_small", seed, 0.70 + jitter),
                 _row("din", False, "train_large", seed, 0.65 + jitter),
                 _row("din", True, "train_large", seed, 0.66 + jitter),
                 _row("deepfm", False, "train_small", seed, 0.58),
                 _row("deepfm", True, "train_small", seed, 0.57),
                 _row("deepfm", False, "train_large", seed, 0.62),
                 _row("deepfm", True, "train_large", seed, 0.63)]
    results = {"models": ["din", "deepfm"], "windows": list(table2.WINDOWS), "rows": rows}
    text = table2.table(results)
    din_gain = next(line for line in text.splitlines() if line.startswith("| DIN improvement"))
    assert din_gain.split("|")[2].strip() == "+0.1000 ± 0.0000"  # small click AUC, per seed
    din = next(line for line in text.splitlines() if line.startswith("| DIN wo. PPM"))
    assert din.split("|")[2].strip() == "0.6100 ± 0.0100"
    avg = next(line for line in text.splitlines() if line.startswith("| Average improvement"))
    assert avg.split("|")[2].strip() == "+0.0450 ± 0.0550"  # (+0.10, -0.01) over models
    h = table2.hypotheses(results)
    assert h["PPM helps every model (train_small)"].startswith("1 of 2 (DIN)")
    assert h["attention models beat W&D/DeepFM (wo. PPM, train_large)"].endswith("holds")
    assert h["w. PPM on train_small >= wo. PPM on train_large"] == "1 of 2 models"
