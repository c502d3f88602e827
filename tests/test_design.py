"""experiments.design: budgets of the real-data tables from documented sizes alone (no files), the
declared factor read off the configs, and UNCONTROLLED where steps or samples per step differ."""
from __future__ import annotations

import pytest

from experiments.design import compare, config_differences, main, report, resolution
from gtahuman.config import ConfigError, load_config


SMALL = "h36m=3000,mpi_inf_3dhp=900,lsp=100,lspet=90,mpii=140,coco=280,gta=12000"  # for the command test


@pytest.fixture(scope="module")
def table6() -> tuple[list[str], int]:
    return report("table6", mini=False, sizes={}, overrides=[])


def test_table6_da_rows_match_their_bt_baseline_by_default(table6) -> None:
    lines, flagged = table6
    assert flagged == 0
    # real only vs BT: fewer steps by the paper's protocol; said, not counted
    assert any(line.startswith("  UNCONTROLLED, as declared (the paper's protocol: real only") for line in lines)
    text = "\n".join(lines)
    dann = text[text.index("## table6_dann  vs  table6_hmr_bt"):text.index("## table6_jan  vs")]
    assert "config  adaptation.method: None -> dann" in dann and "config  data.mode: blended -> adaptation" in dann
    budget_lines = [line.strip() for line in dann.splitlines() if line.strip().startswith("budget")]
    assert budget_lines == ["budget  batch 1024 source + 1024 target vs 2048 train"]  # same steps and samples
    # GTA-Human's 4x file size is not documented, and the report says so; its held-out 5 % is left out
    assert lines[:2] == ["gta: the train part of a 0.05 held-out split, about 1,140,000 of 1,200,000 rows",
                         "gta: 1,200,000 rows ASSUMED (gta_human_4x.npz is undocumented)"]


def test_the_uncontrolled_protocol_is_flagged() -> None:
    sizes = {k: int(v) for k, v in (item.split("=") for item in SMALL.split(","))}
    lines, flagged = report("table6", mini=False, sizes=sizes, overrides=["data.adaptation_batch=each"])
    # DANN, JAN, RSD: the whole batch per domain, the real side's epoch (CycleGAN runs blended); and the
    # matched real-only row, whose fixed epoch (BT's at the documented GTA-Human size) is not BT's here
    assert flagged == 4
    assert any(line.startswith("  UNCONTROLLED: optimiser steps") and "samples per step 4096 vs 2048" in line
               for line in lines)
    assert not any("ASSUMED" in line for line in lines)  # the size was given


def test_table7_cells_share_steps_and_differ_in_the_ratio() -> None:
    lines, flagged = report("table7", mini=False, sizes={}, overrides=[])
    assert flagged == 0
    assert "  config  data.real_ratio: 0.5 -> 1.0" in lines
    assert "  budget  gta samples seen 0 vs 2,457,808" in lines  # every cell 2,400 steps of 2048


def test_config_differences_ignore_bookkeeping_and_empty_mappings() -> None:
    a = load_config(["experiment=table6_hmr_bt", "run.seed=3", "adaptation.args={}"])
    b = load_config(["experiment=table6_hmr_bt", "optim.lr=0.001"])
    assert config_differences(a, b) == [f"optim.lr: 0.001 -> {a.optim.lr}"]


def test_command_exit_codes(capsys) -> None:
    assert main(["nosuchtable"]) == 2
    assert "unknown table 'nosuchtable'" in capsys.readouterr().err
    assert main(["table6", "--sizes", SMALL]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("1 uncontrolled comparison(s)") and "ASSUMED" not in out
    assert out.count("UNCONTROLLED:") == 1 and "## table6_hmr_real_matched  vs  table6_hmr_bt" in out
    with pytest.raises(Exception):
        main(["table6", "--sizes", "gta=notanumber"])


def test_table2_reports_undocumented_sizes_per_row_and_declares_the_papers_protocol() -> None:
    lines, flagged = report("table2", mini=False, sizes={}, overrides=[])
    assert flagged == 0  # BT vs real only and FT vs base differ in steps by the paper's own design
    text = "\n".join(lines)
    assert "## table2_pare\n  not counted: data.train.eft_coco: no size known for 'eft_coco_all.npz'" in text
    bt = text[text.index("## table2_hmr_bt  vs  table2_hmr"):text.index("## table2_hmr_plus_bt  vs")]
    # the GTA-Human source is one line, not one per key
    assert "  config  data.train.gta: (absent) -> present" in bt and "data.train.gta.path" not in bt
    assert "UNCONTROLLED, as declared (the paper's protocol: BT's epochs hold GTA-Human" in bt


def test_the_matched_real_only_rows_share_bts_steps_and_a_different_gta_size_is_flagged(table6) -> None:
    lines, flagged = table6
    text = "\n".join(lines)
    matched = text[text.index("## table6_hmr_real_matched  vs  table6_hmr_bt"):]
    matched = matched[:matched.index("\n## ") if "\n## " in matched else len(matched)]
    assert "config  data.train.gta: present -> (absent)" in matched
    assert "steps" not in matched and "UNCONTROLLED" not in matched  # the data differ, the steps do not
    # a GTA-Human file of another size: BT's epoch changes, the matched row's fixed epoch does not
    lines, flagged = report("table6", mini=False, sizes={"gta": 600_000}, overrides=[])
    text = "\n".join(lines)
    matched = text[text.index("## table6_hmr_real_matched  vs  table6_hmr_bt"):]
    assert flagged == 1 and "UNCONTROLLED: optimiser steps 27,800 vs 14,600" in matched


def test_table7_cells_the_paper_marks_na_are_refused_and_said() -> None:
    lines, _ = report("table7", mini=False, sizes={}, overrides=["data.sampler_args.total=400000"])
    text = "\n".join(lines)
    refused = text[text.index("## table7_real100\n"):].splitlines()[1]
    assert refused.startswith("  not counted: refused by the sampler:") and "an N/A cell" in refused
    assert "## table7_real075\n  steps" in text  # 300K real of 400K: at the cap, counted


def test_fig8_amounts_share_steps_and_are_nested() -> None:
    lines, comparisons = compare("fig8", mini=False, sizes={}, overrides=[])
    text = "\n".join(lines)
    assert text.count("  steps 27,800 (") == 4  # k = 0, 0.5, 1, 2: BT's steps each
    unique = [int(line.split("unique")[1].split("of")[0].replace(",", "")) for line in lines
              if line.strip().startswith("gta ")]
    assert unique == [0, 231_138, 462_277, 924_554]  # round(k x 462,277 real rows) distinct GTA-Human samples
    assert all(not c.uncontrolled for c in comparisons) and len(comparisons) == 3
    with pytest.raises(ConfigError, match="findings"):
        compare("fig8", mini=True, sizes={}, overrides=[])


def test_each_row_says_whether_its_crops_are_cut_at_full_resolution(table6) -> None:
    lines, _ = table6
    assert "  resolution: 224 px crops from a 336 px cache of a 1.5x box (224 px per box side: full resolution)" in lines
    assert resolution(load_config(["experiment=table6_hmr_bt", "data.crop_res=256"])) == \
        "resolution: 224 px crops from a 256 px cache of a 1.5x box (171 px per box side: UPSAMPLED x1.31)"


def test_table2_under_the_released_recipe_says_which_rows_have_none() -> None:
    lines, comparisons = compare("table2", mini=False, sizes={}, overrides=["recipe=mmhuman3d"])
    assert "table2_hmr_plus_ft: no recipe=mmhuman3d (its recipes: paper); reported with its own" in lines
    text = "\n".join(lines)
    bt = text[text.index("## table2_hmr_bt\n"):text.index("## table2_hmr\n")]
    assert "  recipe: mmhuman3d" in bt
    plus_ft = text[text.index("## table2_hmr_plus_ft\n"):text.index("## table2_spin_ft\n")]
    assert "  recipe: paper" in plus_ft and "also:" not in plus_ft
    ft = next(c for c in comparisons if (c.row, c.baseline) == ("table2_hmr_plus_ft", "table2_hmr_plus"))
    assert "recipe: mmhuman3d -> paper" in ft.config  # the comparison says its rows' recipes differ
    assert not any(line.startswith("recipes.") for c in comparisons for line in c.config)
    default, _ = compare("table2", mini=False, sizes={}, overrides=[])
    assert "  recipe: paper (also: mmhuman3d, with recipe=NAME)" in default
