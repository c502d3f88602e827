"""Command line: ``python -m gtahuman.fitting ROOT OUT_DIR --body-dir DIR [options]``.

Annotates every raw GTA-Human sequence under ROOT (annotations/seq_*.pkl) with SMPL fitted to
its 3D keypoints, after the Data Analyser's filter; resumable (finished sequences are skipped).
Prints the report's summary; the full report is OUT_DIR/annotation_report.json.
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from gtahuman.fitting.analyser import AnalyserThresholds
from gtahuman.fitting.annotate import (
    GENDER_CHOICES,
    REPORT_NAME,
    AnnotateOptions,
    annotate_directory,
)
from gtahuman.fitting.smplify3d import FitSettings


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in fields(cls):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, type=lambda v: v.lower() in ("1", "true", "yes"), default=default,
                               metavar="BOOL", help=f"(default {default})")
        else:
            group.add_argument(flag, type=type(default), default=default, help=f"(default {default})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtahuman.fitting", description=__doc__.split("\n")[0])
    parser.add_argument("root", help="GTA-Human root holding annotations/ (and images/)")
    parser.add_argument("out_dir", help="where annotations/, status/ and the report go (not ROOT)")
    parser.add_argument("--body-dir", required=True, help="body-model directory (body.model_dir layout)")
    parser.add_argument("--gender", default="auto", choices=GENDER_CHOICES,
                        help="auto: each sequence's is_male picks the male/female model")
    parser.add_argument("--no-analyser", action="store_true", help="fit every sequence (analysis still recorded)")
    parser.add_argument("--workers", type=int, default=1, help="processes (one torch thread each)")
    parser.add_argument("--chunk-sequences", type=int, default=8, help="sequences fitted per optimisation task")
    parser.add_argument("--max-unreadable", type=int, default=10,
                        help="unreadable sequence files tolerated (recorded, retried next run)")
    parser.add_argument("--pose-prior-file", default=None, help="GaussianPosePrior .npz (default: standard prior)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_options(parser, FitSettings, "fit settings")
    _add_dataclass_options(parser, AnalyserThresholds, "analyser thresholds")
    args = parser.parse_args(argv)
    settings = FitSettings(**{f.name: getattr(args, f.name) for f in fields(FitSettings)})
    thresholds = AnalyserThresholds(**{f.name: getattr(args, f.name) for f in fields(AnalyserThresholds)})
    options = AnnotateOptions(settings=settings, thresholds=thresholds, analyse=not args.no_analyser,
                              gender=args.gender, chunk_sequences=args.chunk_sequences,
                              max_unreadable=args.max_unreadable,
                              pose_prior_file=args.pose_prior_file)
    report = annotate_directory(args.root, args.out_dir, args.body_dir, options, workers=args.workers,
                                progress=not args.quiet)
    toy = " (TOY body model: not SMPL results)" if report["body_model_is_toy"] else ""
    print(f"sequences: {report['sequences']} ({report['skipped_as_finished']} already finished)")
    print(f"kept by the analyser: {len(report['kept'])}; dropped: {len(report['dropped'])}")
    for name, reasons in report["dropped"].items():
        print(f"  {name}: {'; '.join(reasons)}")
    if report["fitted"]:
        print(f"fitted: {report['fitted']} sequences, {report['frames_fitted']} frames, "
              f"{report['frames_per_second']} frames/s, mean fit error {report['mean_fit_error_mm']:.2f} mm{toy}")
    print(f"report: {args.out_dir}/{REPORT_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
