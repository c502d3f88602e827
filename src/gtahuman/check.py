"""``check(cfg) -> CheckReport``: validate a config against the files on disk before training.

``python -m experiments.check [experiment=NAME] [key=value ...]`` (or ``experiments.run ...
dry_run=true``) prints the report. Nothing is trained and no run directory is written. In order:

0. every value (`gtahuman.config_checks`: ranges, registry names, keys that must agree); when one
   is invalid the report lists them and stops there, before any world is generated or file read
   (the commands refuse such a config earlier still, with exit status 2);
1. values the user must give (``???``: ``body.model_dir``, ``model.init_checkpoint`` ...);
2. the body model: every expected file of ``body.model_dir`` by name, then the model loads and
   poses (on the mini world, the world is generated first and its body is used, as in training);
3. every other file a key points to: ``model.init_checkpoint``, backbone weights,
   ``adaptation.sim2real_checkpoint``, ``video.frame_checkpoint``;
4. every data source: its annotation file (or GTA-Human root), its image folder and a few of the
   images the annotation names; an index that is prepared already is checked against its
   manifest and its source checksums (`gtahuman.data.check`); with ``prepare`` (default: on the
   mini world only) missing indices are prepared as training would;
5. the plan (`gtahuman.check_step`): samples per epoch per source, steps per epoch, total steps;
6. one batch fits: the system is built as training builds it and a few steps of forward and
   backward run on one device with the per-device batch (real data when prepared, else a
   synthetic batch of the same shapes); step time, peak memory and the estimated run time.

Every problem is collected with the config key that points at it (a check never stops at the
first); ``report.ok`` is True when there is none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from gtahuman.body.assets import (
    MEAN_PARAMS_FILE,
    MODEL_FILE_CANDIDATES,
    REGRESSOR_SHAPES,
    BodyAssetError,
    check_body_model_dir,
    find_model_file,
)
from gtahuman.config import MISSING_HINTS
from gtahuman.config_checks import config_problems
from gtahuman.data.check import (
    KINDS,
    annotation_rows,
    check_index,
    default_image_root,
    has_own_smpl,
    index_dir_for,
    sample_image_paths,
)
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import MANIFEST, SampleIndex

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin", ".npz")


@dataclass
class Problem:
    key: str  # the config key that points at it ("" when none does)
    path: str  # the file or folder concerned ("" when none)
    message: str

    def format(self) -> str:
        return ": ".join(part for part in (self.key, self.path, self.message) if part)


@dataclass
class SourceStatus:
    split: str
    name: str
    kind: str
    path: str
    image_root: str
    state: str = "missing"  # missing | not prepared | prepared | prepared now
    rows: int | None = None  # rows of the annotation file (gta_raw: sequences)
    samples: int | None = None  # samples of the prepared index
    spec: SourceSpec | None = None


@dataclass
class CheckReport:
    experiment: str
    task: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)
    sources: list[SourceStatus] = field(default_factory=list)
    plan: Any = None  # gtahuman.check_step.Plan
    step: Any = None  # gtahuman.check_step.StepMeasurement

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, key: str, path: Any, message: str) -> None:
        self.problems.append(Problem(key, str(path) if path else "", message))

    @property
    def estimated_seconds(self) -> float | None:
        if self.plan is None or self.step is None or self.plan.total_batches is None:
            return None
        return self.plan.total_batches * self.step.step_seconds

    def format(self) -> str:
        from gtahuman.check_step import format_plan, format_step  # torch and lightning, as check() above

        lines = [f"check: experiment {self.experiment} (task {self.task})"]
        if self.body:
            kind = "TOY body model (numbers are not SMPL results)" if self.body.get("is_toy") else "SMPL"
            lines.append(f"body model: {self.body['dir']} ({kind}); loads and poses: "
                         f"{self.body.get('vertices', '?')} vertices")
        if self.sources:
            lines.append("data:")
            for s in self.sources:
                rows = "" if s.rows is None else (f"{s.rows} sequences" if s.kind == "gta_raw" else f"{s.rows} rows")
                samples = "" if s.samples is None else f", {s.samples} samples"
                lines.append(f"  {s.split:5s} {s.name:18s} {s.kind:9s} {s.state:12s} {rows}{samples}  {s.path}")
        lines += format_plan(self.plan) + format_step(self.step, self.plan, self.estimated_seconds)
        lines += [f"note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"PROBLEMS ({len(self.problems)}), each with the config key that points at it:")
            lines += [f"  - {p.format()}" for p in self.problems]
        else:
            lines.append("OK: no problems found")
        return "\n".join(lines)


def _value(cfg: DictConfig, key: str) -> Any:
    """The value at ``key``; None when absent, null or still ``???`` (reported elsewhere)."""
    return OmegaConf.select(cfg, key, throw_on_missing=False, default=None)


# ------------------------------------------------------------------------------ body model
def _check_body_files(model_dir: Path, report: CheckReport) -> bool:
    """Every expected file of ``body.model_dir`` by name; True when all exist."""
    if not model_dir.is_dir():
        report.problem("body.model_dir", model_dir, "directory does not exist (the SMPL files, docs/BODY_MODELS.md)")
        return False
    before = len(report.problems)
    for gender, names in MODEL_FILE_CANDIDATES.items():
        if find_model_file(model_dir, gender) is None:
            report.problem("body.model_dir", model_dir / names[1], f"missing {gender} SMPL model "
                           f"(also accepted: {names[0]}, {names[2]}, or in smpl/)")
    for name, shape in REGRESSOR_SHAPES.items():
        if not (model_dir / name).is_file():
            report.problem("body.model_dir", model_dir / name, f"missing regressor, shape {shape}")
    if not (model_dir / MEAN_PARAMS_FILE).is_file():
        report.problem("body.model_dir", model_dir / MEAN_PARAMS_FILE, "missing (pose 144, shape 10, cam 3)")
    return len(report.problems) == before


def check_body(cfg: DictConfig, report: CheckReport) -> Path | None:
    """The body-model directory training would use (the world is generated on the mini world),
    checked file by file and loaded; None when it is not usable."""
    from gtahuman.run_data import ensure_assets  # the run's stack (torch, lightning): only for a valid config

    model_dir = _value(cfg, "body.model_dir")
    if model_dir is None and OmegaConf.is_missing(cfg.body, "model_dir"):
        return None  # reported as a missing value
    if model_dir and not cfg.data.miniworld and not _check_body_files(Path(model_dir), report):
        return None
    try:
        body_dir = ensure_assets(cfg)
    except BodyAssetError as err:
        report.problem("body.model_dir", model_dir, str(err).split("\nExpected:")[0])
        return None
    try:
        import torch  # heavy: imported once the config is known valid, so a bad one fails in well under a second

        from gtahuman.body.smpl import BodyModel  # torch and smplx, as above

        assets = check_body_model_dir(body_dir, genders=("neutral",), load_models=False)
        with torch.no_grad():
            out = BodyModel(body_dir, "neutral", assets=assets)(torch.zeros(1, 10), torch.zeros(1, 69),
                                                                torch.zeros(1, 3))
        if not torch.isfinite(out.vertices).all():
            raise ValueError("the neutral model gives non-finite vertices at the rest pose")
    except (OSError, ValueError, KeyError) as err:
        report.problem("body.model_dir", body_dir, f"the body model does not load: {err}")
        return None
    report.body = {"dir": str(body_dir), "is_toy": assets.is_toy, "vertices": int(out.vertices.shape[1])}
    return body_dir


# ------------------------------------------------------------------------------ other files
def check_files(cfg: DictConfig, report: CheckReport) -> None:
    """Checkpoints and weights the config points to."""
    wanted = {
        "model.init_checkpoint": "the checkpoint to fine-tune from (docs/REPRODUCE.md)",
        "adaptation.sim2real_checkpoint": "the CycleGAN sim2real generator (gtahuman.sim2real.cyclegan)",
        "video.frame_checkpoint": "the frame model whose features the temporal model reads",
    }
    backbone_args = OmegaConf.to_container(cfg.model.backbone_args, resolve=True)
    for arg, value in (backbone_args or {}).items():
        if isinstance(value, str) and (arg.endswith("path") or value.endswith(WEIGHT_SUFFIXES)):
            wanted[f"model.backbone_args.{arg}"] = "backbone weights (ImageNet start, docs/REPRODUCE.md)"
    for key, what in wanted.items():
        value = _value(cfg, key)
        if value and not Path(value).is_file():
            report.problem(key, value, f"no such file: {what}")


def check_static_fits(cfg: DictConfig, report: CheckReport) -> None:
    """HMR+ is HMR supervised by SPIN's static fits where a dataset has 2D keypoints only (the
    paper's Table 2); without them such a source trains on its keypoints alone and the row is HMR
    without the adversary. Real data only: the mini world's keypoint-only set has no fits yet."""
    for name, src in cfg.data.train.items():
        key, fits = f"data.train.{name}.static_fits", src.get("static_fits")
        if fits:
            if src.kind == "gta_raw":
                report.problem(key, fits, "static fits join SPIN npz or HumanData rows; a gta_raw source has SMPL")
            elif not Path(fits).is_file():
                report.problem(key, fits, "no such file: SPIN's static fits (static_fits/<dataset>_fits.npy)")
            continue
        path = _value(src, "path")
        if (cfg.model.variant != "hmr_plus" or cfg.data.miniworld or path is None or not Path(path).is_file()
                or src.kind not in ("spin_npz", "humandata")):
            continue
        if not has_own_smpl(src.kind, path):
            report.problem(key, "", f"model.variant=hmr_plus, but {path} has 2D keypoints only: without SPIN's "
                                    f"static fits this source trains on its keypoints alone and the row is HMR "
                                    f"without the adversary, not HMR+; give {key}=<SPIN data>/static_fits/"
                                    f"<dataset>_fits.npy (SPIN's data release)")


# ------------------------------------------------------------------------------ data sources
def _check_layout(key: str, kind: str, path: Path, image_root: Path, report: CheckReport) -> bool:
    """The annotation file / release root and the image folder; True when both are there."""
    if kind == "gta_raw":
        found = path.is_dir() and (path / "annotations").is_dir()
        what = "the GTA-Human release root (annotations/seq_*.pkl, images/seq_*/)"
    else:
        found = path.is_file()
        what = f"the {kind} annotation file"
    if not found:
        report.problem(f"{key}.path", path, f"missing: {what}")
    if not image_root.is_dir():
        report.problem(f"{key}.image_root", image_root,
                       "missing: the folder the annotation's image paths are relative to")
    return found and image_root.is_dir()


def _check_images(key: str, kind: str, path: Path, image_root: Path, report: CheckReport) -> None:
    try:
        missing = [p for p in sample_image_paths(kind, path) if not (image_root / p).is_file()]
    except (OSError, ValueError, KeyError) as err:
        report.problem(f"{key}.path", path, f"cannot read the image paths: {err}")
        return
    if missing:
        report.problem(f"{key}.image_root", image_root, f"images named by {path.name} are not there, e.g. "
                       f"{image_root / missing[0]} ({len(missing)} of the first/middle/last missing)")


def check_source(split: str, name: str, src: DictConfig, cfg: DictConfig, body_dir: Path | None,
                 prepare: bool, report: CheckReport) -> SourceStatus:
    from gtahuman.run_data import prepare_source  # the run's stack (torch, lightning): only for a valid config

    key = f"data.{split}.{name}"
    known = len(report.problems)
    kind, raw_path = src.kind, _value(src, "path")
    status = SourceStatus(split, name, kind, str(raw_path), "")
    if kind not in KINDS:
        report.problem(f"{key}.kind", "", f"unknown kind '{kind}'; choices: {', '.join(KINDS)}")
        return status
    if raw_path is None:
        return status  # ??? reported as a missing value
    path = Path(raw_path)
    image_root = Path(src.image_root) if src.image_root else default_image_root(kind, path)
    status.image_root = str(image_root)
    if not _check_layout(key, kind, path, image_root, report):
        return status
    _check_images(key, kind, path, image_root, report)
    try:
        status.rows = annotation_rows(kind, path)
    except (OSError, ValueError) as err:
        report.problem(f"{key}.path", path, f"unreadable: {err}")
        return status
    status.state = "not prepared"
    if body_dir is None:
        return status
    index_dir = index_dir_for(cfg.run.cache_dir, name, kind, path, src.image_root, body_dir, src.get("static_fits"))
    if (index_dir / MANIFEST).is_file():
        checked = check_index(index_dir, source=path)
        for text in checked.problems:
            report.problem(f"{key}.path", index_dir, f"prepared index: {text}")
        status.state, status.samples = "prepared", checked.samples
        if checked.ok and not prepare:  # full frames, as no crop cache was checked
            status.spec = SourceSpec(name, str(index_dir), str(image_root.resolve()), role=src.role)
        if not checked.ok:
            return status
    if prepare and len(report.problems) == known:  # a source with missing images is not prepared
        try:
            status.spec = prepare_source(name, src, cfg, body_dir)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            report.problem(f"{key}.path", path, f"prepare failed: {type(err).__name__}: {err}")
            return status
        if status.state == "not prepared":
            status.state = "prepared now"

        status.samples = len(SampleIndex.load(status.spec.index_dir, verify=False))
    return status


# ------------------------------------------------------------------------------ the check
def check(cfg: DictConfig, *, prepare: bool | None = None, steps: int = 3, measure: bool = True) -> CheckReport:
    """Validate ``cfg`` against the files on disk (see the module docstring); never trains.

    ``prepare``: prepare sources that are not prepared yet (default: on the mini world only).
    ``steps``: training steps measured (the first is reported apart as warm-up); ``measure=False``
    skips building the system.
    """
    from gtahuman.check_step import build_plan, measure_step  # torch and lightning: only when asked to plan or step

    report = CheckReport(experiment=str(cfg.experiment), task=str(cfg.task))
    for key in sorted(OmegaConf.missing_keys(cfg)):
        report.problem(key, "", f"a value is required (??? in the config): {MISSING_HINTS.get(key, 'see the config')}; "
                                f"give it on the command line: {key}=...")
    invalid = config_problems(cfg)
    for bad in invalid:  # the task's value among them
        report.problem(bad.key, "", f"value {bad.shown}: expected {bad.expected}")
    if invalid:
        report.notes.append("files, data and the training step were not checked: fix the config values first")
        return report
    body_dir = check_body(cfg, report)
    check_files(cfg, report)
    check_static_fits(cfg, report)
    prepare = bool(cfg.data.miniworld) if prepare is None else prepare
    for split in ("train", "val", "test"):
        for name, src in cfg.data[split].items():
            report.sources.append(check_source(split, name, src, cfg, body_dir, prepare, report))
    if not cfg.data.train:
        report.problem("data.train", "", "no train source")
    if cfg.task == "video":
        report.notes.append("task=video: files, body model and data are checked; the temporal model's plan and "
                            "step are not (its frame model trains like the image rows)")
        return report
    report.plan = build_plan(cfg, report)
    blocking = [p for p in report.problems  # what would make the measured step fail for a known reason
                if p.key.startswith(("body.", "model.", "adaptation.", "data.sampler_args", "data.batch_size"))
                or p.key == "task"]
    if measure and body_dir is not None and not blocking:
        report.step = measure_step(cfg, body_dir, report, steps)
    elif measure:
        report.notes.append("one-batch check skipped: fix the body model, model files or sampler problems first")
    return report
