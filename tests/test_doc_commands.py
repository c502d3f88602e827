"""Every ``python -m`` command quoted in a code block of README.md or docs/*.md runs.

Commands are read from the docs at collection time (so docs written later are covered too),
deduplicated, and run in-process (``main(argv)`` of the module) from an empty working folder:

- ``experiments.run`` / ``experiments.check`` of a mini-world row (``*_mini``, the quickstart):
  checked (gtahuman.check) with the tiny overrides of conftest, one measured step; must pass;
- the same of a real-data row: ``dry_run=true`` with no data, no SMPL files: must exit 1 with a
  report naming the missing files and their keys;
- ``experiments.evaluate``: for real, on a checkpoint of a tiny run trained here once;
- ``experiments.sweep``: ``--print-config`` (the sweep and its experiment config resolve);
- trainers too long for a test (CycleGAN, the findings set): ``--help``;
- anything else: for real, with ``.cache/gtahuman`` mapped to the session's tiny world.

A command passes when its module's ``main`` returns or exits without an exception (a clean
message and a non-zero status is how a command says "missing file"); mini-world commands and
commands on the generated mini world must exit 0.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import shlex
import sys
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES

from gtahuman.config import load_config

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HELP_ONLY = {"gtahuman.sim2real.cyclegan", "experiments.findings"}  # train for an hour or more: options parse
# Documented commands that still end in a traceback (strict: the test fails once they are fixed,
# so the entry is removed then).
KNOWN_TRACEBACKS: dict[str, str] = {}  # command text -> why it still ends in a traceback
TINY_RUN_ID = "docs"


def doc_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of every ``python -m`` line in the file's ``` blocks."""
    commands, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        text = (pending + " " + line.strip()) if pending else line.strip()
        if not pending:
            start = number
        if text.endswith("\\"):
            pending = text[:-1].strip()
            continue
        pending = ""
        if text.startswith("python -m "):
            commands.append((start, text.split(" #", 1)[0].strip()))
    return commands


def _collect() -> list[pytest.param]:
    seen: dict[str, list[str]] = {}
    for doc in DOCS:
        for number, command in doc_commands(doc):
            seen.setdefault(command, []).append(f"{doc.name}:{number}")
    params = []
    for command, places in seen.items():
        known = [reason for text, reason in KNOWN_TRACEBACKS.items() if text in command]
        marks = [pytest.mark.xfail(strict=True, raises=Exception, reason=known[0])] if known else []
        params.append(pytest.param(command, id=places[0], marks=marks))
    return params


COMMANDS = _collect()


# ------------------------------------------------------------------------------ running
def run_module(module: str, argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` of ``module`` in-process: (exit status, stdout + stderr)."""
    imported = importlib.import_module(module)
    if hasattr(imported, "__path__"):  # a package: python -m runs its __main__
        imported = importlib.import_module(f"{module}.__main__")
    main = imported.main
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if inspect.signature(main).parameters:
                result = main(argv)
            else:  # a main() that reads sys.argv
                saved, sys.argv = sys.argv, [module, *argv]
                try:
                    result = main()
                finally:
                    sys.argv = saved
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return code, out.getvalue()


def _experiment(args: list[str]) -> str:
    for arg in args:
        if arg.startswith("experiment="):
            return arg.split("=", 1)[1]
    return "quickstart"


def _is_mini(args: list[str]) -> bool:
    name = _experiment(args)
    return name == "quickstart" or name.endswith("_mini")


class Session:
    """The tiny world, its cache and runs, and (made on first use) a tiny trained checkpoint."""

    def __init__(self, tiny_root: Path, tiny_config):
        self.root, self.tiny_config = tiny_root, tiny_config
        self.cache, self.runs = tiny_root / "cache", tiny_root / "runs"
        self._checkpoint: Path | None = None

    @property
    def checkpoint(self) -> Path:
        if self._checkpoint is None:
            from gtahuman.train import train

            cfg = self.tiny_config(f"run.run_id={TINY_RUN_ID}", "trainer.max_epochs=1", "data.epoch_length=16")
            run = Path(train(cfg)["run_dir"])
            self._checkpoint = run / "checkpoints" / "best.ckpt"
        return self._checkpoint

    def substitute(self, arg: str) -> str:
        arg = arg.replace(".cache/gtahuman", str(self.cache)).replace("default-standard-seed0", "tiny-standard-seed0")
        arg = re.sub(r"<run-id>|<run>", TINY_RUN_ID, arg)
        key, sep, value = arg.rpartition("=")
        if value.endswith(".ckpt") or value == "CKPT":
            return f"{key}{sep}{self.checkpoint}"
        return arg

    def tiny_overrides(self, args: list[str]) -> list[str]:
        """conftest's overrides, minus those the row's own recipe cannot take."""
        own = load_config(args)
        drop = set()
        if own.data.sampler == "amount":
            drop.add("data.epoch_length=512")  # the amount sampler sets its own epoch
        if own.model.backbone_args:
            drop.add("model.backbone=mobilenetv3_small_050")  # its backbone_args belong to its backbone
        kept = [o for o in TINY_OVERRIDES if o not in drop]
        return [*kept, "trainer.gradient_clip_val=null", f"run.cache_dir={self.cache}", f"run.output_root={self.runs}"]


@pytest.fixture(scope="module")
def session(tiny_root, tiny_config, single_thread):
    ensure = tiny_config()
    from gtahuman.run_data import ensure_assets

    ensure_assets(ensure)  # the tiny world the mini commands and .cache/gtahuman paths use
    return Session(tiny_root, tiny_config)


def _run_experiment(session: Session, module: str, args: list[str]) -> None:
    if any(a in ("--list", "--print-config", "--help", "-h") for a in args):
        code, out = run_module(module, args)
        assert code == 0 and out.strip()
        return
    if _is_mini(args):
        args = [session.substitute(a) for a in args]
        flags = [a for a in args if a.startswith("--")]
        overrides = [a for a in args if not a.startswith("--") and a != "dry_run=true"]
        code, out = run_module("experiments.check", [*overrides, *session.tiny_overrides(overrides),
                                                     *[f for f in flags if f != "--prepare"], "--steps", "1"])
        assert code == 0 and "OK: no problems found" in out, out
        return
    entry = args if module == "experiments.check" else [*args, "dry_run=true"]
    code, out = run_module(module, [*entry, "--no-step"] if module == "experiments.check" else entry)
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert code == 1 and "PROBLEMS" in out and problems, out
    assert all(re.match(r"  - [a-z_]+(\.[\w]+)*: ", line) for line in problems), out  # each names its key


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_runs(command: str, session: Session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths (data/, checkpoints/) point at nothing
    monkeypatch.delenv("GTAHUMAN_DATA", raising=False)
    words = shlex.split(command)
    module, args = words[2], words[3:]
    if module in ("experiments.run", "experiments.check"):
        _run_experiment(session, module, args)
        return
    if module == "experiments.evaluate":
        args = [session.substitute(a if not a.startswith("ckpt=") else "ckpt=CKPT") for a in args]
        code, out = run_module(module, args)
        # real-data sets; gta_heldout exists where a config splits GTA-Human (the real ones do)
        real = any(word in a for a in args for word in ("pw3d", "h36m", "mpi_inf", "gta_heldout"))
        assert code == 0 or (real and code != 0 and out.strip()), out
        return
    if module == "experiments.sweep" and "--list" not in args:
        args = [*args, "--print-config"]
    elif module in HELP_ONLY:
        args = ["--help"]
    mini = any(".cache/gtahuman" in a for a in args)
    args = [session.substitute(a) for a in args] if mini else args
    if module == "gtahuman.miniworld":
        args = [*args, "--size", "tiny", "--quiet"]
    code, out = run_module(module, args)
    assert out.strip(), f"{command}: printed nothing"
    if mini:
        assert code == 0, out


def test_the_docs_hold_commands_and_the_parser_reads_continuations(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text `python -m not.this`\n```bash\npython -m a.b x=1 \\\n    y=2   # note\npip x\n```\n"
                   "python -m outside.block\n")
    assert doc_commands(doc) == [(3, "python -m a.b x=1 y=2")]
    names = {Path(p.id.split(":")[0]).name for p in COMMANDS}
    assert {"DATA.md", "BODY_MODELS.md", "REPRODUCE.md"} <= names


def test_reproduce_names_every_experiment():
    from gtahuman.config import experiment_names

    text = (REPO / "docs" / "REPRODUCE.md").read_text()
    missing = [n for n in experiment_names() if not n.endswith("_mini") and n != "quickstart"
               and not re.search(rf"\b{n}\b", text)]
    assert not missing, f"docs/REPRODUCE.md does not name {missing}"
