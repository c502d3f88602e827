"""The table printed at the end of a run (``experiments.run``) and of ``experiments.evaluate``.

Per test set three rows: the trained model, the training data's best constant prediction
("train mean (constant)", metrics.json ``constant_baseline``) and the SMPL mean parameters
("SMPL mean params", ``mean_pose_baseline``), with MPJPE, PA-MPJPE, PVE in mm and ORIENT, the
median global-orientation error in degrees. Then one line per set with trained / constant for
MPJPE and PA-MPJPE: the project's bar is at most 0.8x the constant. Older metrics.json files
without a constant baseline print the rows they have.
"""
from __future__ import annotations

import math
from typing import Any

from gtahuman.evaluation import get_protocol

BASELINE_ROWS = (("constant_baseline", "train mean (constant)"), ("mean_pose_baseline", "SMPL mean params"))
TABLE_METRICS = ("mpjpe", "pa_mpjpe", "pve", "orient_deg")
RATIO_METRICS = ("mpjpe", "pa_mpjpe")  # the project's bar: trained <= 0.8 x constant on both


def ratios_to_constant(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per test set: trained / constant-baseline error for MPJPE and PA-MPJPE (NaN where either is
    missing); sets without a ``constant_baseline`` entry (runs from before it) are left out."""
    constants = metrics.get("constant_baseline") or {}
    out = {}
    for set_name, summary in metrics.get("test", {}).items():
        if set_name not in constants:
            continue
        out[set_name] = {}
        for metric in RATIO_METRICS:
            trained, constant = summary.get(metric), constants[set_name].get(metric)
            ok = trained is not None and constant is not None and math.isfinite(trained) and constant > 0
            out[set_name][metric] = trained / constant if ok else float("nan")
    return out


def format_results(metrics: dict[str, Any]) -> str:
    """The table printed at the end of a run: per test set, the trained model, the train data's
    constant and the SMPL mean parameters (mm; ORIENT = median root-orientation error, degrees),
    then the ratio trained / constant per set."""
    protocols = {name: metrics.get("protocols", {}).get(name, metrics["protocol"]) for name in metrics.get("test", {})}
    width = max([16, *(len(n) + 1 for n in protocols)])
    pwidth = max([13, *(len(p) + 1 for p in protocols.values())])
    lwidth = max(len(label) for _, label in BASELINE_ROWS) + 1
    header = f"{'test set':<{width}} {'protocol':<{pwidth}} {'model':<{lwidth}} "
    lines = [header + " ".join(f"{('ORIENT' if n == 'orient_deg' else n.upper()):>10}" for n in TABLE_METRICS)]
    toy = bool(metrics.get("body_model_is_toy"))
    for set_name, summary in metrics.get("test", {}).items():
        toy |= get_protocol(protocols[set_name]).toy_body_model
        rows = [("trained", summary)] + [(label, metrics[key][set_name]) for key, label in BASELINE_ROWS
                                         if set_name in (metrics.get(key) or {})]
        for label, values in rows:
            cells = " ".join(f"{_number(values.get(n)):>10.1f}" for n in TABLE_METRICS)
            lines.append(f"{set_name:<{width}} {protocols[set_name]:<{pwidth}} {label:<{lwidth}} {cells}")
    for set_name, ratios in ratios_to_constant(metrics).items():
        lines.append(f"{set_name}: trained / constant = "
                     + ", ".join(f"{ratios[m]:.2f} {m.upper().replace('_', '-')}" for m in RATIO_METRICS))
    note = "errors in mm, ORIENT in degrees (median); nan: not part of the protocol"
    if toy:
        note += "; numbers come from the toy body model and the mini world, not SMPL or real data"
    return "\n".join(lines + [note])


def _number(value: Any) -> float:
    """metrics.json writes NaN as null: back to NaN."""
    return float("nan") if value is None else float(value)
