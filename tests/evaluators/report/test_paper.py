"""The transcribed paper tables: exact values and their internal consistency."""

import numpy as np
import pytest

from evaluators.report import GENEVAL_TASKS, paper_ablation, paper_reference, paper_table, paper_tables


def value(table, method, key):
    return paper_table(table).set_index("method").loc[method, key]


def test_all_tables_present():
    assert paper_tables() == ["ablation_lambda", "appendix_sd35m", "table2_flux_hpdv2", "table2_geneval",
                              "table3_rewards"]


@pytest.mark.parametrize("table, method, key, expected", [
    ("table2_flux_hpdv2", "LeapAlign", "hpsv2.1", 0.4092),
    ("table2_flux_hpdv2", "Flux", "hpsv3", 13.5020),
    ("table2_flux_hpdv2", "MixGRPO", "imagereward", 1.6155),
    ("table2_flux_hpdv2", "DRaFT-LV", "ur_iq", 3.6887),
    ("table2_geneval", "LeapAlign", "geneval", 0.7420),
    ("table2_geneval", "Flux", "geneval/single_object", 0.9938),
    ("table2_geneval", "MixGRPO", "geneval/counting", 0.8000),
    ("table2_geneval", "LeapAlign", "geneval/color_attr", 0.6600),
    ("table3_rewards", "Flux", "hpsv3", 10.7624),
    ("table3_rewards", "LeapAlign", "pickscore", 25.7589),
    ("appendix_sd35m", "LeapAlign", "pickscore", 23.6180),
    ("appendix_sd35m", "SD3.5-M", "hpsv2.1", 0.2967),
    ("appendix_sd35m", "DRaFT-LV", "pickscore", 23.0747),
])
def test_transcribed_values(table, method, key, expected):
    assert value(table, method, key) == expected


def test_groups_and_marks():
    table = paper_table("table2_flux_hpdv2").set_index("method")
    assert table.loc["Flux", "group"] == "pretrained"
    assert table.loc["DanceGRPO", "group"] == "policy-gradient"
    assert table.loc["LeapAlign", "group"] == "direct-gradient"
    assert table.loc["MixGRPO", "mark"] == "†" and table.loc["LeapAlign", "mark"] == ""


def test_geneval_overall_is_mean_of_tasks_in_one_unit():
    table = paper_table("table2_geneval")
    tasks = table[[f"geneval/{t}" for t in GENEVAL_TASKS]]
    assert ((tasks >= 0) & (tasks <= 1)).all().all()  # fractions, not percent
    np.testing.assert_allclose(tasks.mean(axis=1), table["geneval"], atol=5e-5)


def test_tables_agree_where_they_should():
    t2 = paper_table("table2_flux_hpdv2").set_index("method")
    t3 = paper_table("table3_rewards").set_index("method")
    assert (t3["hpsv2.1"] == t2.loc[t3.index, "hpsv2.1"]).all()
    lam = paper_table("ablation_lambda").set_index("lambda")
    for key in ["hpsv2.1", "hpsv3", "pickscore", "imagereward"]:
        assert lam.loc[0.55, key] == t2.loc["LeapAlign", key]


def test_reference_joins_in_paper_order():
    ref = paper_reference("table2")
    assert ref["method"].tolist() == ["Flux", "DanceGRPO", "MixGRPO", "ReFL", "DRaFT-LV", "DRTune", "LeapAlign"]
    assert ref.set_index("method").loc["DRTune", "geneval"] == 0.7101
    assert ref.set_index("method").loc["DRTune", "hpsv3"] == 15.5606


def test_ablation_long_format():
    long = paper_ablation("ablation_lambda")
    assert set(long.columns) == {"ablation", "value", "metric", "mean", "ci_low", "ci_high"}
    row = long[(long["value"] == 0.95) & (long["metric"] == "pickscore")]
    assert row["mean"].item() == 23.5082 and row["ablation"].item() == "lambda"
