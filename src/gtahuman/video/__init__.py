"""Video-based recovery (paper Table 3): a VIBE-style temporal model on cached frame features.

features.py    the frozen frame model's per-frame features (+ its predictions and the GT) per source
windows.py     windows that never cross a sequence, mixing by ratio, Table 3's downsampled GTA
datamodule.py  window datasets and `VideoDataModule`
temporal.py    GRU encoder (+ residual) and the HMR head initialised from the frame model
motion_discriminator.py   VIBE's optional motion discriminator
system.py      `TemporalSystem` (LightningModule): per-frame losses, within-sequence evaluation
train.py       `train_video(cfg)`, dispatched by `gtahuman.train.train` when ``task=video``

Submodules are imported on use (``from gtahuman.video.train import train_video``), so importing
this package stays cheap.
"""
