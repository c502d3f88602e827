"""LightningModules: the HMR system (HMR, HMR+, fine-tuning, domain adaptation), its losses,
per-sample evaluation results, and import of SPIN / mmhuman3d checkpoints."""
from gtahuman.systems.checkpoint_import import (
    CheckpointImportError,
    CheckpointImportWarning,
    ImportReport,
    detect_format,
    import_hmr_state_dict,
)
from gtahuman.systems.hmr import (
    SUPERVISION,
    VARIANTS,
    HMRSystem,
    effective_learning_rate,
)

__all__ = [
    "SUPERVISION",
    "VARIANTS",
    "CheckpointImportError",
    "CheckpointImportWarning",
    "HMRSystem",
    "ImportReport",
    "detect_format",
    "effective_learning_rate",
    "import_hmr_state_dict",
]
