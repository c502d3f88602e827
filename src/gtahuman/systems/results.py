"""Per-sample evaluation results of one eval set, collected over an epoch and gathered (DDP).

`EvalResultsCollector` keeps, per batch, the sample ids, per-sample errors and predicted
parameters as CPU tensors, plus the first ``feature_samples`` backbone features it sees. At the
end of the epoch `finish()` gathers every rank's rows (ranks may hold different numbers of rows:
each is padded to the longest before ``all_gather``), sorts by sample id and keeps the first row
of each repeated id (a DistributedSampler pads the last batch with repeats). The result is a
dict of numpy arrays, one row per sample, ready to be written to the run directory.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(rows: Tensor) -> Tensor:
    """Concatenate ``rows`` (N_rank, ...) of every rank in rank order (identity without DDP)."""
    if not _distributed():
        return rows
    # NCCL needs the tensors on the current GPU; gloo works on CPU.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = rows.to(device)
    count = torch.tensor([local.shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[: int(c.item())] for piece, c in zip(pieces, counts)]).cpu()


def first_of_each_id(sample_ids: Tensor) -> Tensor:
    """Indices that sort ``sample_ids`` and keep the first occurrence of each id."""
    order = torch.sort(sample_ids, stable=True).indices
    sorted_ids = sample_ids[order]
    keep = torch.ones_like(sorted_ids, dtype=torch.bool)
    keep[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return order[keep]


class EvalResultsCollector:
    """Rows of one eval set: ``add(sample_id=(B,), name=(B, ...), ...)`` then `finish()`."""

    def __init__(self, feature_samples: int = 0) -> None:
        if feature_samples < 0:
            raise ValueError(f"feature_samples must be >= 0, got {feature_samples}")
        self.feature_samples = feature_samples
        self._rows: dict[str, list[Tensor]] = {}
        self._features: list[Tensor] = []
        self._feature_ids: list[Tensor] = []
        self._features_kept = 0

    def __len__(self) -> int:
        return sum(t.shape[0] for t in self._rows.get("sample_id", []))

    def add(self, features: Tensor | None = None, **columns: Tensor) -> None:
        if "sample_id" not in columns:
            raise KeyError("EvalResultsCollector.add: 'sample_id' is required")
        ids = columns["sample_id"].detach().reshape(-1).long().cpu()
        if self._rows and set(columns) != set(self._rows):
            raise KeyError(f"EvalResultsCollector.add: columns {sorted(columns)} differ from "
                           f"the first batch's {sorted(self._rows)}")
        for name, values in columns.items():
            values = values.detach().cpu()
            if values.shape[0] != ids.shape[0]:
                raise ValueError(f"column '{name}': {values.shape[0]} rows for {ids.shape[0]} sample ids")
            self._rows.setdefault(name, []).append(ids if name == "sample_id" else values)
        if features is not None and self._features_kept < self.feature_samples:
            take = min(self.feature_samples - self._features_kept, features.shape[0])
            self._features.append(features[:take].detach().float().cpu())
            self._feature_ids.append(ids[:take])
            self._features_kept += take

    def finish(self) -> dict[str, np.ndarray]:
        """Gathered, sorted, deduplicated rows; ``features`` / ``feature_sample_id`` hold the
        first ``feature_samples`` features by sample id. Call on every rank (collective)."""
        if not self._rows:
            columns: dict[str, Tensor] = {"sample_id": gather_rows(torch.empty(0, dtype=torch.long))}
        else:
            columns = {name: gather_rows(torch.cat(parts)) for name, parts in self._rows.items()}
        keep = first_of_each_id(columns["sample_id"])
        result = {name: values[keep].numpy() for name, values in columns.items()}
        if self.feature_samples:
            feats = torch.cat(self._features) if self._features else torch.empty(0, 0)
            ids = torch.cat(self._feature_ids) if self._feature_ids else torch.empty(0, dtype=torch.long)
            feats, ids = gather_rows(feats), gather_rows(ids)
            keep = first_of_each_id(ids)[: self.feature_samples]
            result["features"] = feats[keep].numpy()
            result["feature_sample_id"] = ids[keep].numpy()
        return result
