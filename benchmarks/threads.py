"""Torch threads on a small, shared machine: the quickstart's training steps with the run's own
thread policy (`gtahuman.threads`: the free cores, read from the machine's load when the run
starts), against 1 and 2 fixed threads, on the machine as it is and with one core kept busy by
another process (a Python loop, as a browser tab or a second run would).

    python benchmarks/threads.py [--steps 64] [--policies default,1,2] [--conditions idle,busy]
                                 [key=value ...]

Each (condition, policy) is a fresh ``python -m experiments.check --steps N`` process, so the
policy reads the load at its start exactly as a run does; ``key=value`` arguments go to every one
of them (the tests pass the tiny world's). ``<condition>_<policy>_s_per_step`` is the median step
(data loading included, the first step left out); ``<condition>_default_threads`` says what the
policy chose and why. "idle" is the machine as found: ``idle_busy_cores_before`` says how busy
that was, so run it on a quiet machine. Last line: ``ratio`` = busy default / best fixed choice
in the busy case, the policy's cost where a wrong choice costs most (goal: at most 1.10).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from gtahuman.threads import busy_cores

REPO_ROOT = Path(__file__).resolve().parents[1]
_STEP = re.compile(r"([0-9.]+) s per step")
_THREADS = re.compile(r"torch threads (\d+) \(([^)]*)\)")
_SPIN = "while True:\n    pass\n"


def check_step(steps: int, policy: str, overrides: list[str]) -> tuple[float, str]:
    """(median seconds per step, 'threads (why)') of one `experiments.check --steps` process."""
    args = [sys.executable, "-m", "experiments.check", "--steps", str(steps), *overrides]
    if policy != "default":
        args.append(f"trainer.threads={int(policy)}")
    # the policy's own choice: no thread count inherited from this shell
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, env=env)
    output = done.stdout + done.stderr
    step, threads = _STEP.search(output), _THREADS.search(output)
    if done.returncode != 0 or step is None or threads is None:
        sys.exit(f"experiments.check failed for policy {policy} (exit {done.returncode}):\n{output[-3000:]}")
    return float(step.group(1)), f"{threads.group(1)} ({threads.group(2)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64, help="training steps timed per process (default 64)")
    parser.add_argument("--policies", default="default,1,2", help="comma-separated: default and/or thread counts")
    parser.add_argument("--conditions", default="idle,busy", help="comma-separated: idle and/or busy")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = parser.parse_args()
    policies = args.policies.split(",")
    conditions = args.conditions.split(",")
    if any(o.startswith("trainer.threads=") for o in args.overrides):
        parser.error("trainer.threads is what this benchmark varies; leave it out of the overrides")
    if "busy" not in conditions or "default" not in policies or len(policies) < 2:
        parser.error("the ratio needs the busy condition, the default policy and at least one fixed count")
    print(f"steps: {args.steps}")
    seconds: dict[tuple[str, str], float] = {}
    for condition in conditions:
        spinner = None
        if condition == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
            time.sleep(1.0)  # let it be seen as load before the policy looks
        else:
            print(f"idle_busy_cores_before: {busy_cores():.2f}")
        try:
            for policy in policies:
                step_s, threads = check_step(args.steps, policy, args.overrides)
                seconds[condition, policy] = step_s
                print(f"{condition}_{policy}_s_per_step: {step_s:.4f}")
                if policy == "default":
                    print(f"{condition}_default_threads: {threads}")
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    fixed = [p for p in policies if p != "default"]
    for condition in conditions:
        best = min(seconds[condition, p] for p in fixed)
        print(f"{condition}_default_over_best: {seconds[condition, 'default'] / best:.3f}")
    print(f"ratio: {seconds['busy', 'default'] / min(seconds['busy', p] for p in fixed):.3f}")


if __name__ == "__main__":
    main()
