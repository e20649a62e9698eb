"""Where the shipped demo models live: ``cospeech/assets/<dir>`` in the installed package
(the teacher, the VAE and, once trained, the distilled student of ``cospeech generate``;
the learned motion model)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
TEACHER_DIR = "teacher"
VAE_DIR = "vae"
MOTION_DIR = "motion"
STUDENT_DIR = "student"
