"""The machinery of `gtahuman.config_checks`: `ConfigProblem` (one bad key, its value, what was
expected) and `Checks`, which collects every problem of one config (numbers in range, names from a
registry snapshot, values that resolve) without stopping at the first."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gtahuman.config import did_you_mean
from gtahuman.config_names import NAME_SOURCES, known_names


@dataclass(frozen=True)
class ConfigProblem:
    key: str  # the dotted config key
    value: Any
    expected: str

    @property
    def shown(self) -> str:
        """The value as it would be written on the command line."""
        return _show(self.value)

    def format(self) -> str:
        return f"{self.key}={self.shown}: expected {self.expected}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value and value.strip() == value else repr(value)
    if isinstance(value, (DictConfig, ListConfig)):
        return str(OmegaConf.to_container(value, resolve=False))
    return str(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    return f"{'<' if high_open else '<='} {_num(high)}"


class Checks:
    """Collects every problem of one config (a check never stops at the first)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.problems: list[ConfigProblem] = []
        self._unresolved: set[str] = set()  # keys reported as not resolving (reported once)

    def bad(self, key: str, value: Any, expected: str) -> None:
        self.problems.append(ConfigProblem(key, value, expected))

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, value) for a given value (null included); (False, None) when the key is absent,
        still ``???``, or its interpolation does not resolve (a problem then)."""
        parent_key, _, leaf = key.rpartition(".")
        try:
            parent = OmegaConf.select(self.cfg, parent_key, throw_on_missing=False) if parent_key else self.cfg
            if not isinstance(parent, DictConfig) or leaf not in parent or OmegaConf.is_missing(parent, leaf):
                return False, None
            return True, parent[leaf]
        except OmegaConfBaseException as err:
            if key not in self._unresolved:
                self._unresolved.add(key)
                self.bad(key, self._raw(key), f"a value that resolves ({str(err).splitlines()[0]})")
            return False, None

    def _raw(self, key: str) -> Any:
        """The value as written (interpolations unresolved); '?' when it cannot be read."""
        node: Any = OmegaConf.to_container(self.cfg, resolve=False)
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return "?"
            node = node[part]
        return node

    def number(self, key: str, low: float | None = None, high: float | None = None, *, low_open: bool = False,
               high_open: bool = False, optional: bool = False, what: str = "") -> None:
        given, value = self.get(key)
        if not given or (value is None and optional):
            return
        inside = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if inside and low is not None:
            inside = value > low if low_open else value >= low
        if inside and high is not None:
            inside = value < high if high_open else value <= high
        if not inside:
            kind = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a number"
            extra = f" ({what})" if what else ""
            self.bad(key, value, f"{kind} {_bounds(low, high, low_open, high_open)}"
                                 f"{' or null' if optional else ''}{extra}")

    def choice(self, key: str, names: Iterable[str], what: str, *, optional: bool = False, source: str = "") -> None:
        given, value = self.get(key)
        if not given or (value is None and optional):
            return
        names = list(names)
        if value not in names:
            where = f" ({source})" if source else ""
            article = "an" if what[0] in "aeiouAEIOU" else "a"
            self.bad(key, value, f"{article} {what}{where}: {', '.join(names)}{' (or null)' if optional else ''}"
                                 f"{did_you_mean(value, names)}")

    def registered(self, key: str, kind: str, *, optional: bool = False, extra: Sequence[str] = ()) -> None:
        module_name, attribute, _ = NAME_SOURCES[kind]
        self.choice(key, [*extra, *known_names(kind)], kind, optional=optional,
                    source=f"{module_name}.{attribute}")

    def value(self, key: str, default: Any = None) -> Any:
        given, value = self.get(key)
        return value if given else default
