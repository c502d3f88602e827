"""Body layer: SMPL via smplx, asset checks, chumpy-free model files, keypoint conventions,
rotations and cameras, and the toy body model used by tests and the mini world."""
