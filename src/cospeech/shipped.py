"""Where the shipped demo models live: ``cospeech/assets/<dir>`` in the installed package
(the teacher and the VAE of ``cospeech generate``, the learned motion model)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
TEACHER_DIR = "teacher"
VAE_DIR = "vae"
MOTION_DIR = "motion"
