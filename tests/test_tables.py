import json

import pandas as pd
import pytest

from attribench.reports.registry import REPORTS, build_report, load_reports


def _run(train, accs):
    return {
        "experiment": f"xd_{train}",
        "profile": "smoke",
        "attributor_label": "EF",
        "model": "m",
        "input_size": 64,
        "train_dataset": train,
        "classes": ["a", "b"],
        "n_classes": 2,
        "chance": 0.5,
        "n_train": 10,
        "test": {
            t: {
                "accuracy": a,
                "accuracy_ci95": [a - 0.1, min(1, a + 0.1)],
                "macro_precision": a,
                "macro_recall": a,
                "macro_f1": a,
                "n": 20,
            }
            for t, a in accs.items()
        },
    }


def test_table2_grid_puts_each_number_in_its_cell(tmp_path):
    runs = [_run("natural", {"natural": 0.9, "creative": 0.6}), _run("creative", {"natural": 0.7, "creative": 0.8})]
    paths = []
    for r in runs:
        p = tmp_path / f"{r['experiment']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    out = {"csv": tmp_path / "t2.csv", "md": tmp_path / "t2.md", "metrics": tmp_path / "t2.json"}
    cfg = {"profile": "smoke", "tables": {"table2": {"experiments": [r["experiment"] for r in runs]}}}
    df = build_report("table2", cfg, inputs={"runs": paths}, out=out)
    got = df.set_index(["train_on", "test_on"])["accuracy"]
    assert got[("natural", "creative")] == 0.6 and got[("creative", "natural")] == 0.7
    csv = pd.read_csv(tmp_path / "t2.csv")
    assert {"profile", "n_classes", "chance"} <= set(csv.columns) and (csv.chance == 0.5).all()
    md = (tmp_path / "t2.md").read_text().splitlines()
    row = next(line for line in md if line.startswith("| test on creative"))
    assert row.split("|")[2].strip().startswith("60.00") and row.split("|")[3].strip().startswith("80.00")
    assert json.loads((tmp_path / "t2.json").read_text()) == {
        "xd_natural/natural": 0.9,
        "xd_natural/creative": 0.6,
        "xd_creative/natural": 0.7,
        "xd_creative/creative": 0.8,
    }


def test_unknown_report_is_named(tmp_path):
    with pytest.raises(KeyError, match="table99"):
        build_report("table99", {}, inputs={"runs": []}, out={})
    assert {"table1", "table2", "table7"} <= set(load_reports())


def test_a_table_without_experiments_in_params_names_the_key():
    load_reports()
    with pytest.raises(KeyError, match="tables.table2"):
        REPORTS["table2"].runs({"profile": "smoke", "tables": {}})
