"""Command line: ``python -m gtahuman.miniworld OUT_DIR [--size default] [--seed 0]``.

Generates the mini world (or finds it cached) and prints what it wrote, how long it took and
its size on disk.
"""
from __future__ import annotations

import argparse
import json
import time

from gtahuman.miniworld.diversity import format_table
from gtahuman.miniworld.domains import SIZES, VARIANTS
from gtahuman.miniworld.world import generate_world


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtahuman.miniworld", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="directory to generate into (a cache: reruns are no-ops)")
    parser.add_argument("--size", default="default", choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default="standard", choices=sorted(VARIANTS),
                        help="what the GTA domain covers (controls): " + "; ".join(
                            f"{v.name}: {v.purpose}" for v in VARIANTS.values()))
    parser.add_argument("--workers", type=int, default=None, help="processes (default: min(2, CPUs))")
    parser.add_argument("--body-dir", default=None, help="body-model dir to render with (default: toy model)")
    parser.add_argument("--overwrite", action="store_true", help="replace a world of other params in OUT_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    paths = generate_world(args.out_dir, args.size, args.seed, progress=not args.quiet, body_dir=args.body_dir,
                           workers=args.workers, overwrite=args.overwrite, variant=args.variant)
    elapsed = time.perf_counter() - start
    manifest = json.loads(paths.manifest.read_text())
    print(f"mini world '{args.size}' ({args.variant}) seed {args.seed} in {paths.root}"
          f"{' (cached: nothing regenerated)' if paths.cached else ''}")
    for key, info in manifest["files"].items():
        samples = f"{info['samples']} samples, " if "samples" in info else ""
        print(f"  {key:<18} {info['path']:<36} {samples}{info['sequences']} sequences, "
              f"{info['frames_rendered']} frames")
    body = manifest["body_model"]
    print(f"  body model         {paths.body_dir} ({'TOY body model, not SMPL' if body['is_toy'] else 'SMPL'})")
    sizes = manifest["bytes_on_disk"]
    print(f"size on disk: {_megabytes(sum(sizes.values()))} ("
          + ", ".join(f"{name} {_megabytes(n)}" for name, n in sizes.items()) + ")")
    if "diversity" in manifest:
        print("what the domains vary in (views = distinct sequence x 30 deg azimuth x 10 deg elevation cells):")
        print("  " + format_table(manifest["diversity"]).replace("\n", "\n  "))
    print(f"generation time: {manifest['generation_seconds']:.1f} s with {manifest['workers']} worker(s); "
          f"this call {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
