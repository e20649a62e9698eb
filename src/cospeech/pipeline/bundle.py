"""The models behind ``cospeech generate``: the DiT that runs (the many-step teacher or the
distilled causal student), the video VAE and their settings.

A model folder holds ``teacher/`` (VideoDiT ``save_pretrained`` + ``sampling.json``,
:class:`SamplingSettings`), ``vae/`` (TinyVideoVAE ``save_pretrained``) and optionally
``student/`` (the ``train distill`` export: VideoDiT + ``sampling.json`` of kind
``causal-student``, :class:`~cospeech.models.i2v.StudentSampling`). The default is the demo
folder shipped in ``cospeech/assets`` (docs/demo-models.md). Which DiT runs
(:func:`model_source`): the student when the folder has one, else the teacher; or the one
named (``"teacher"`` / ``"student"``); or a single trained DiT folder (a run's
``final-ema``), whose ``sampling.json`` ``kind`` says which it is, with the folder's VAE.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from cospeech.config import from_dict, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.models import VideoDiT
from cospeech.models.checkpoint import CONFIG_NAME, wan_config_dict
from cospeech.models.delta_folder import DELTA_NAME, LOW_RANK_DELTA_NAME, load_dit
from cospeech.models.i2v import STUDENT_KIND, StudentSampling
from cospeech.models.vae import TinyVideoVAE
from cospeech.models.weight_delta import save_low_rank_delta, save_weight_delta
from cospeech.precision import resolve_precision
from cospeech.shipped import ASSETS, STUDENT_DIR, TEACHER_DIR, VAE_DIR

SAMPLING_FILE = "sampling.json"
MODEL_KINDS = ("teacher", "student")
STUDENT_ATTENTIONS = ("dense", "sparse")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """How a teacher was trained and is best sampled.

    ``window``: latent frames per window (the training window); ``overlap``: latent frames
    shared by neighbouring windows; ``size``: frame side in pixels; ``steps``, ``guidance``,
    ``shift``: Euler steps, guidance scale and timestep shift of sampling; ``k``,
    ``block_size``: the sparse plans of ``--attention global|sparse`` (K of Eq. 2, tokens
    per block; the sparse stage's defaults).
    """

    window: int = 5
    overlap: int = 2
    size: int = 128
    fps: float = 25.0
    steps: int = 20
    guidance: float = 1.0
    shift: float = 3.0
    k: int = 4
    block_size: int = 128

    def save(self, folder: str | Path) -> None:
        write_json(Path(folder) / SAMPLING_FILE, to_dict(self))

    @classmethod
    def load(cls, folder: str | Path) -> SamplingSettings:
        path = Path(folder) / SAMPLING_FILE
        if not path.is_file():
            return cls()
        try:
            return from_dict(cls, read_json(path, error=CheckpointError))
        except InputError as exc:
            raise CheckpointError(f"{path}: {exc}") from None


ModelSettings = SamplingSettings | StudentSampling
"""The settings of the DiT that runs: a teacher's or a student's ``sampling.json``."""


@dataclass
class ModelBundle:
    """The DiT that runs (``model``: the teacher or the student), the VAE and the model's
    settings (``sampling.json``), ready for inference (eval mode). ``precision``:
    ``float32``, or ``bfloat16``: the DiT's weights are bfloat16 and the VAE decodes under
    bfloat16 autocast (:mod:`cospeech.precision`)."""

    model: VideoDiT
    vae: TinyVideoVAE
    settings: ModelSettings
    precision: str = "float32"

    @property
    def kind(self) -> str:
        """``"teacher"`` or ``"student"``."""
        return "student" if isinstance(self.settings, StudentSampling) else "teacher"

    @property
    def teacher(self) -> VideoDiT:
        """The teacher DiT (InputError for a student bundle, so that teacher-only code
        never runs a student as if it were one)."""
        if self.kind != "teacher":
            raise InputError("this bundle runs the distilled student; load it with "
                             "model='teacher' for the teacher")  # fmt: skip
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@dataclass(frozen=True)
class ModelSource:
    """Where the DiT (``dit``) and the VAE (``vae``) of a run are, and which ``kind`` the
    DiT is."""

    dit: Path
    vae: Path
    kind: str


def model_source(folder: str | Path | None = None, model: str | Path | None = None) -> ModelSource:
    """Which DiT and VAE a run loads (see the module docstring); InputError naming what is
    missing. ``folder``: a model folder (None: the shipped demo models); ``model``: None
    (the folder's student if it has one, else its teacher), ``"teacher"``, ``"student"``,
    another model folder, or a trained DiT folder (``config.json`` + ``sampling.json``)."""
    root = Path(folder) if folder is not None else ASSETS
    if model is None or str(model) in MODEL_KINDS:
        return _bundled(root, None if model is None else str(model))
    path = Path(model)
    if (path / TEACHER_DIR).is_dir() or (path / STUDENT_DIR).is_dir():
        return _bundled(path, None)
    if (path / CONFIG_NAME).is_file():
        kind = "student" if _is_student(path) else "teacher"
        return ModelSource(path, _bundled_vae(root), kind)
    raise InputError(
        f"--model {model}: neither teacher, student, a model folder (teacher/ + vae/) nor a "
        f"trained DiT folder ({CONFIG_NAME} + {SAMPLING_FILE}); see docs/generate.md"
    )


def _bundled(root: Path, kind: str | None) -> ModelSource:
    """The ``kind`` DiT of model folder ``root`` (None: the student if it has one)."""
    vae = _bundled_vae(root)
    if kind is None:
        kind = "student" if (root / STUDENT_DIR).is_dir() else "teacher"
    sub = root / (STUDENT_DIR if kind == "student" else TEACHER_DIR)
    if not sub.is_dir():
        hint = " (no distilled student is bundled: use --model teacher)" * (kind == "student")
        raise InputError(f"model folder {root}: no {sub.name}/ inside{hint} (see docs/generate.md)")
    return ModelSource(sub, vae, kind)


def _bundled_vae(root: Path) -> Path:
    if not (root / VAE_DIR).is_dir():
        raise InputError(f"model folder {root}: no {VAE_DIR}/ inside (see docs/generate.md)")
    return root / VAE_DIR


def _is_student(folder: Path) -> bool:
    """Whether the DiT folder's ``sampling.json`` is a causal student's."""
    path = folder / SAMPLING_FILE
    if not path.is_file():
        return False
    data = read_json(path, error=CheckpointError)
    return isinstance(data, dict) and data.get("kind") == STUDENT_KIND


def load_student_sampling(folder: str | Path) -> StudentSampling:
    """The checked ``sampling.json`` of a student folder (CheckpointError naming the file)."""
    path = Path(folder) / SAMPLING_FILE
    try:
        sampling = from_dict(StudentSampling, read_json(path, error=CheckpointError))
    except InputError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    checks = {
        f"kind must be {STUDENT_KIND!r}": sampling.kind == STUDENT_KIND,
        f"attention must be one of {STUDENT_ATTENTIONS}": sampling.attention in STUDENT_ATTENTIONS,
        "steps must not be empty": bool(sampling.steps),
        "chunk_frames, window and size must be >= 1": min(
            sampling.chunk_frames, sampling.window, sampling.size
        )
        >= 1,
        "cache_sink and cache_window must be >= 0": min(sampling.cache_sink, sampling.cache_window)
        >= 0,
    }
    problems = [message for message, ok in checks.items() if not ok]
    if problems:
        raise CheckpointError(f"{path}: {'; '.join(problems)}")
    return sampling


def load_settings(
    folder: str | Path | None = None, model: str | Path | None = None
) -> ModelSettings:
    """The sampling settings of the DiT a run would load (:func:`model_source`), read
    without loading any weights (so that options can be checked against them first)."""
    source = model_source(folder, model)
    if source.kind == "student":
        return load_student_sampling(source.dit)
    return SamplingSettings.load(source.dit)


def load_bundle(
    folder: str | Path | None = None,
    *,
    model: str | Path | None = None,
    device: torch.device | str = "cpu",
    precision: str = "auto",
) -> ModelBundle:
    """Load the DiT and VAE a run uses (:func:`model_source`: ``folder`` default the
    shipped demo models, ``model`` default its student if it has one, else its teacher);
    weights are cast to float32, the DiT's then to bfloat16 when ``precision`` (``auto``:
    :func:`~cospeech.precision.resolve_precision` for ``device``) is ``bfloat16``."""
    precision = resolve_precision(precision, torch.device(device))
    source = model_source(folder, model)
    settings = load_settings(folder, model)
    dit = load_dit(source.dit, device)
    if precision == "bfloat16":
        dit = dit.to(torch.bfloat16)
    vae = TinyVideoVAE.from_pretrained(source.vae, dtype=torch.float32, device=device)
    if dit.config.out_dim != vae.latent_channels:
        raise CheckpointError(
            f"{source.dit}: the {source.kind} works on {dit.config.out_dim} latent channels, "
            f"the VAE ({source.vae}) has {vae.latent_channels}"
        )
    return ModelBundle(dit.eval(), vae.eval(), settings, precision)


def save_delta_dit(
    model_dir: str | Path,
    base_dir: str | Path,
    out_dir: str | Path,
    max_rank: int | None = None,
) -> float:
    """Write the DiT of ``model_dir`` (a ``save_pretrained`` folder) into ``out_dir`` as its
    difference to the DiT of ``base_dir`` as :func:`load_dit` loads it (full weights or
    itself a delta folder), a sibling of ``out_dir``: ``config.json``, the ``sampling.json``
    of ``model_dir`` if any, and :data:`DELTA_NAME` (int8, same architecture;
    ``max_rank`` None) or :data:`LOW_RANK_DELTA_NAME` (``max_rank``: the LoRA rank), naming
    ``base_dir``'s folder in its metadata. Returns the largest element error."""
    out, base_path = Path(out_dir), Path(base_dir)
    if out.resolve().parent != base_path.resolve().parent:
        raise InputError(f"the base {base_path} must be a sibling of the delta folder {out}")
    model = VideoDiT.from_pretrained(model_dir)
    base = load_dit(base_path)  # the base exactly as loading will use it
    out.mkdir(parents=True, exist_ok=True)
    if max_rank is None:
        worst = save_weight_delta(model, base, out / DELTA_NAME, base_dir=base_path.name)
    else:
        summary = save_low_rank_delta(model, base, out / LOW_RANK_DELTA_NAME, max_rank,
                                      base_dir=base_path.name)  # fmt: skip
        kinds = Counter(summary["stored"].values())
        log.info(
            "%s: low-rank delta %s, ranks %s",
            out,
            dict(kinds),
            sorted(set(summary["ranks"].values())),
        )
        worst = summary["max_error"]
    write_json(out / CONFIG_NAME, wan_config_dict(model.config))
    _copy_sampling(Path(model_dir), out)
    return worst


def _copy_sampling(source: Path, out: Path) -> None:
    """Copy ``source``'s ``sampling.json``, checked, to ``out`` (nothing if it has none)."""
    if not (source / SAMPLING_FILE).is_file():
        return
    settings = (
        load_student_sampling(source) if _is_student(source) else SamplingSettings.load(source)
    )
    write_json(out / SAMPLING_FILE, to_dict(settings))


def save_bundle(
    teacher_dir: str | Path,
    vae_dir: str | Path,
    settings: SamplingSettings,
    folder: str | Path,
    dtype: torch.dtype = torch.float16,
    student_dir: str | Path | None = None,
    student_delta: bool = False,
) -> Path:
    """Write a model folder (``teacher/``, ``vae/``, ``teacher/sampling.json``, and
    ``student/`` with its own ``sampling.json`` when ``student_dir`` is given) from a
    trained teacher, VAE and student (``save_pretrained`` folders), weights cast to
    ``dtype`` (half the size in float16; :func:`load_bundle` casts back to float32).
    ``student_delta``: store the student as its int8 difference to the teacher as written
    (:data:`DELTA_NAME`, a quarter of its float32 size) instead of its own weights."""
    root = Path(folder)
    teacher = VideoDiT.from_pretrained(teacher_dir, dtype=dtype)
    teacher.save_pretrained(root / TEACHER_DIR)
    settings.save(root / TEACHER_DIR)
    TinyVideoVAE.from_pretrained(vae_dir).save_pretrained(root / VAE_DIR, dtype=dtype)
    if student_dir is not None:
        sampling = load_student_sampling(student_dir)
        if student_delta:
            save_delta_dit(student_dir, root / TEACHER_DIR, root / STUDENT_DIR)
        else:
            VideoDiT.from_pretrained(student_dir, dtype=dtype).save_pretrained(root / STUDENT_DIR)
        write_json(root / STUDENT_DIR / SAMPLING_FILE, to_dict(sampling))
    return root
