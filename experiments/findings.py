"""Train the mini-world findings set and write docs/FINDINGS.md, in one command.

    python -m experiments.findings [--jobs 2] [--out docs/FINDINGS.md] [--embedding pca] [--list]

The set answers the study's questions (analysis.findings) on the procedural mini world, every
run on the quickstart's recipe (1,024 steps of HMR+ with the keypoint branch at 96 px, validated
every 128 steps):

- every row at three seeds (seed-to-seed spread is several mm here), the amount rows at two;
  a seed varies the model's initialisation and the data order, never the world (world seed 0);
- blended (BT) vs real only: does GTA-Human help (the positive control: on the default world
  GTA-Human covers factors of the wild test that the studio lacks);
- BT on the ``gta_studio`` world vs real only: the negative control (GTA-Human restricted to the
  studio's coverage; the gain should vanish within noise);
- BT + DANN: does domain adaptation add, and does it shrink the real-vs-GTA feature gap;
- all the real data + 0x / 0.25x / 0.5x / 1x the real pool's size of GTA-Human as *nested fixed
  subsets* (amount sampler, ``fixed_synthetic_subset``; the same 1,024 steps): does the error fall
  as GTA data grows (Fig. 8);
- the scarcity sampler with GTA-Human camera elevations of 30 degrees and more removed, against
  the same sampler keeping everything: does the error rise in exactly the thinned bins (Fig. 9
  as an experiment);
- per-bin density and error of the BT run: is the error higher where data is scarce (Fig. 9).

Left out to stay near 90 minutes on 2 cores: GTA-Human with keypoints only (Table 8; add it with
``experiment=table8_keypoints_mini``). Runs go to ``<run.output_root>/<experiment>/<run_id>`` as usual. A finished run (metrics.json) is
kept, an interrupted one resumes from its last checkpoint, so the command can be re-run after a
stop. ``--jobs N`` trains N runs at once, each with cores // N torch threads (``--threads``). Wall times are kept
in ``<out folder>/findings_files/times.json`` and reported in the header; each run's output
in ``<output root>/findings_logs/``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from gtahuman.atomic import atomic_write_text

FEATURE_SETS = "real_indoor,gta"  # the domains whose backbone features are compared


@dataclass(frozen=True)
class FindingsRun:
    label: str
    experiment: str
    overrides: tuple[str, ...] = ()
    run_id: str = "findings"
    features: bool = False  # evaluate on FEATURE_SETS afterwards (feature-gap question)

    def arguments(self) -> list[str]:
        return [f"experiment={self.experiment}", f"run.run_id={self.run_id}", *self.overrides]

    def command(self) -> str:
        return "python -m experiments.run " + " ".join(self.arguments())


def amount_run(gta_multiple: float) -> FindingsRun:
    """All the real data plus a fixed subset of ``gta_multiple`` x as many GTA-Human samples (Fig. 8),
    nested across amounts at one seed, 1,024 steps."""
    total = 1.0 + gta_multiple
    overrides = ("data.sampler=amount", f"data.real_ratio={1.0 / total:.6g}", f"data.sampler_args.total_multiple={total:g}",
                 "data.sampler_args.fixed_synthetic_subset=true", "data.epoch_length=null", "trainer.max_steps=1024",
                 "trainer.max_epochs=1000", "trainer.val_every_steps=128")
    return FindingsRun(f"real + {gta_multiple:g}x GTA-Human (nested)", "quickstart", overrides,
                       f"findings-nested-gta{gta_multiple:g}")


def seeded(run: FindingsRun, seed: int) -> FindingsRun:
    """``run`` at ``seed`` (seed 0 keeps the run's own run id; features at every seed, so the
    domain-classifier accuracy has an interval over seeds)."""
    if seed == 0:
        return replace(run, label=f"{run.label}, seed 0")
    return replace(run, label=f"{run.label}, seed {seed}", overrides=(*run.overrides, f"run.seed={seed}"),
                   run_id=f"{run.run_id}-seed{seed}")


SEEDS = (0, 1, 2)  # the seed-to-seed spread of one recipe is up to ~7 mm PA-MPJPE: one seed resolves little
AMOUNT_SEEDS = (0, 1)  # 4 amounts x 2 seeds: the slope's interval has 6 degrees of freedom
ROWS = (
    FindingsRun("blended (BT)", "quickstart", features=True),
    FindingsRun("real only", "table2_hmr_plus_mini"),
    FindingsRun("BT, negative-control world (GTA-Human within the studio's coverage)", "quickstart",
                ("data.miniworld_variant=gta_studio",), "findings-gta-studio"),
    FindingsRun("BT + DANN", "findings_dann_mini", features=True),
    FindingsRun("every sample once per epoch", "findings_unthinned_mini"),
    FindingsRun("GTA-Human elevations >= 30 deg removed", "findings_thinned_mini"),
)
AMOUNT_ROWS = tuple(amount_run(k) for k in (0.0, 0.25, 0.5, 1.0))
FINDINGS_RUNS: tuple[FindingsRun, ...] = (tuple(seeded(row, seed) for row in ROWS for seed in SEEDS)
                                          + tuple(seeded(row, seed) for row in AMOUNT_ROWS for seed in AMOUNT_SEEDS))


def run_dir(run: FindingsRun, output_root: Path) -> Path:
    return output_root / run.experiment / run.run_id


def _environment(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _run_logged(module: str, arguments: list[str], log: Path, threads: int, what: str) -> float:
    """``python -m module arguments`` with its output in ``log``; seconds taken."""
    start = time.perf_counter()
    with open(log, "w") as stream:
        done = subprocess.run([sys.executable, "-m", module, *arguments], stdout=stream,
                              stderr=subprocess.STDOUT, env=_environment(threads), check=False)
    if done.returncode:
        raise RuntimeError(f"{what} failed (exit {done.returncode}); its log: {log}")
    return time.perf_counter() - start


def train_one(run: FindingsRun, output_root: Path, threads: int, log_dir: Path) -> float | None:
    """Train (or resume) ``run`` in a subprocess; seconds taken, or None when it was finished."""
    folder = run_dir(run, output_root)
    if (folder / "metrics.json").is_file():
        return None
    arguments = run.arguments() + [f"run.output_root={output_root}", "trainer.progress_bar=false"]
    if (folder / "config.yaml").is_file():
        arguments.append("run.resume=true")
    return _run_logged("experiments.run", arguments, log_dir / f"{run.experiment}-{run.run_id}.log", threads,
                       f"findings run '{run.label}'")


def evaluate_features(run: FindingsRun, output_root: Path, threads: int, log_dir: Path) -> float | None:
    """Backbone features of FEATURE_SETS for the feature-gap question (skipped when present)."""
    folder = run_dir(run, output_root)
    if any(folder.glob("evaluations/*/gta_features.npz")):
        return None
    return _run_logged("experiments.evaluate", [f"ckpt={folder}/checkpoints/best.ckpt", f"set={FEATURE_SETS}"],
                       log_dir / f"{run.experiment}-{run.run_id}-evaluate.log", threads,
                       f"feature evaluation of '{run.label}'")


def budget_lines() -> list[str]:
    """One line per comparison of the set: how the two rows' budgets differ (steps, samples per
    step and per source), counted from their configs as `python -m experiments.design findings`
    does."""
    from experiments.design import compare

    _, comparisons = compare("findings", mini=True, sizes={}, overrides=[])
    out = []
    for c in comparisons:
        said = (c.budget or ["(the same)"] if c.budget is not None else ["not counted"])
        said += [f"UNCONTROLLED: {'; '.join(c.uncontrolled)}"] if c.uncontrolled else []
        out.append(f"- {c.row} vs {c.baseline}, budget: {'; '.join(said)}")
    return out


def header(runs: tuple[FindingsRun, ...], times: dict[str, float], output_root: Path, jobs: int,
           elapsed: float | None) -> str:
    intro = ("What the suite's own study says on the procedural mini world (toy body model; not SMPL or real "
             "data). Made by one command, `python -m experiments.findings`, which trains the runs below "
             f"(`--jobs N` at a time, each with its share of the CPU threads; this page: {jobs}), evaluates the "
             "features the gap question needs, and writes this page with `analysis.findings`.")
    lines = ["# Findings on the mini world", "", intro, "", "| run | command | steps | wall time |", "|---|---|---|---|"]
    total = sum(times.get(f"features: {r.label}", 0.0) for r in runs)
    for run in runs:
        folder = run_dir(run, output_root)
        metrics = json.loads((folder / "metrics.json").read_text())
        steps = metrics.get("global_step", "?")
        seconds = times.get(run.label, metrics.get("wall_time_s"))  # trained elsewhere: train()'s own figure
        total += seconds or 0.0
        lines.append(f"| {run.label} | `{run.command()}` | {steps:,} | "
                     f"{'?' if seconds is None else f'{seconds:.0f} s'} |")
    lines += ["", "What else differs within each comparison (a comparison should differ in its declared factor "
              "only; where it does not, it is said here). Budgets, from `python -m experiments.design findings` "
              "(steps, and samples seen per source over the whole run; 'the same' within 0.1 %):", "",
              *budget_lines(),
              "- the nested amounts vs BT: the amount sampler draws the real part uniformly over the real pool "
              "(the mixture sampler weighs real_indoor 0.6 and real_kp 0.4), and the GTA-Human share of a batch "
              "grows with the amount (0 to 50 %); the 0x point is the amount sampler's own real-only run.",
              "- thinned vs unthinned: the thinned epoch holds 480 fewer GTA-Human frames (25 %), so the real "
              "share of a batch rises from 44 % to 51 %.",
              "- the negative control vs BT: GTA-Human is restricted to the studio's coverage in geometry and "
              "looks together (world variants gta_studio_geometry / gta_studio_looks split them).",
              "- seeds vary the model's initialisation and the data order; the world is the same (seed 0).",
              "", f"Each run's wall time is its own (a run kept from an earlier invocation keeps the time it "
              f"took then); runs and feature evaluations add up to {total / 60:.1f} min on {os.cpu_count()} CPU "
              "cores" + (f". The invocation that wrote this page took {elapsed / 60:.1f} min." if elapsed else "."),
              ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/FINDINGS.md"))
    parser.add_argument("--output-root", type=Path, default=Path("checkpoints"), help="run.output_root of the runs")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: CPU cores // jobs)")
    parser.add_argument("--embedding", choices=["umap", "pca", "none"], default="pca")
    parser.add_argument("--list", action="store_true", help="print the runs' commands and stop")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{r.label}: {r.command()}" for r in FINDINGS_RUNS))
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    files = args.out.parent / "findings_files"
    log_dir = args.output_root / "findings_logs"  # beside the runs (git-ignored), not in docs/
    log_dir.mkdir(parents=True, exist_ok=True)
    times_path = files / "times.json"
    times: dict[str, float] = json.loads(times_path.read_text()) if times_path.is_file() else {}
    start = time.perf_counter()

    def work(run: FindingsRun) -> None:
        seconds = train_one(run, args.output_root, threads, log_dir)
        if seconds is not None:
            times[run.label] = seconds
        if run.features:
            seconds = evaluate_features(run, args.output_root, threads, log_dir)
            if seconds is not None:
                times[f"features: {run.label}"] = seconds
        atomic_write_text(times_path, json.dumps(times, indent=2, sort_keys=True) + "\n")
        print(f"done: {run.label}", flush=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(work, run) for run in FINDINGS_RUNS]:
            future.result()

    from analysis.findings import findings_markdown
    from analysis.rundirs import find_runs

    report = findings_markdown(find_runs([str(run_dir(r, args.output_root)) for r in FINDINGS_RUNS]), args.out,
                               embedding=None if args.embedding == "none" else args.embedding)
    elapsed = time.perf_counter() - start
    body = report.split("\n", 1)[1]  # drop the generated title: the header has its own
    atomic_write_text(args.out, header(FINDINGS_RUNS, times, args.output_root, args.jobs, elapsed) + body)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
