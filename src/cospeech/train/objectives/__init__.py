"""Training objectives of the distillation stage: DMD (Eq. 4) and the region loss (Eq. 5)."""
