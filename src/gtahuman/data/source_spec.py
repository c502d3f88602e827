"""`SourceSpec`: one prepared dataset as the data module takes it (its index, where its pixels are,
its role in the mixture), also the form stored in checkpoint hyperparameters."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class SourceSpec:
    """One dataset: its saved index, where its pixels are, and its role in the mixture.

    Pixels come from ``crop_shards_dir`` when set (litdata shards of the crop cache: a local
    directory or a URL such as ``s3://bucket/crops``, see :mod:`.shards`), else from
    ``crop_cache_dir``, else from the full frames under ``image_root``. With both shards and a
    crop cache given, the shards must have been written from that cache (checked at setup).
    """

    name: str
    index_dir: str
    image_root: str | None = None
    crop_cache_dir: str | None = None
    role: Literal["real", "synthetic"] = "real"
    crop_shards_dir: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ("real", "synthetic"):
            raise ValueError(f"source '{self.name}': role must be 'real' or 'synthetic'; got {self.role!r}")
        if self.image_root is None and self.crop_cache_dir is None and self.crop_shards_dir is None:
            raise ValueError(f"source '{self.name}': give image_root, crop_cache_dir or crop_shards_dir")

    @classmethod
    def of(cls, value: SourceSpec | Mapping[str, Any]) -> SourceSpec:
        """A SourceSpec from itself or its dict form (as stored in checkpoint hyperparameters)."""
        if isinstance(value, SourceSpec):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a SourceSpec or a mapping of its fields, got {type(value).__name__}")
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise KeyError(f"source spec {dict(value)}: unknown key(s) {sorted(unknown)}; "
                           f"expected {[f.name for f in fields(cls)]}")
        return cls(**{k: (str(v) if k.endswith(("_dir", "_root")) and v is not None else v)
                      for k, v in value.items()})
