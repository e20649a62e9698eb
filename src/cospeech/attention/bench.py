"""Speed of the sparse attention backends against dense SDPA, on masks from a real pose.

A pose sequence (a ``.npz``, the synthetic corpus's motion rules, or a built-in moving
upper body) gives the frame similarity -> global mask (K most similar past frames) and the
region bitmasks on the latent token grid (:func:`cospeech.attention.pose_plan.pose_plan`);
:class:`SparsePlan` pools them to blocks; each
backend runs on random ``q, k, v`` of the shape's size. The baseline is unmasked dense
SDPA, the real alternative to sparse attention.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cospeech.attention.kernels import resolve_backend, sparse_attention
from cospeech.attention.plan import SparsePlan
from cospeech.attention.pose_plan import pose_plan as pose_plan  # re-exported for the CLI
from cospeech.errors import InputError
from cospeech.latent_geometry import SPACE_STRIDE, video_frames
from cospeech.pose import schema as s
from cospeech.pose.sequence import PoseSequence

TOKEN_STRIDE = 2 * SPACE_STRIDE  # VAE x8 in space, then 2x2 patches: 16x16 pixels a token
SDPA_ROW = "sdpa (dense, no mask)"


@dataclass(frozen=True)
class BenchShape:
    """Attention problem: ``batch x heads`` x (``latent_frames`` x tokens per frame) x ``head_dim``.

    Tokens per frame come from a ``width`` x ``height`` video at :data:`TOKEN_STRIDE`.
    """

    name: str
    heads: int
    head_dim: int
    latent_frames: int
    width: int
    height: int
    dtype: str = "float32"
    batch: int = 1

    @property
    def tokens_per_frame(self) -> int:
        return (self.width // TOKEN_STRIDE) * (self.height // TOKEN_STRIDE)

    @property
    def num_tokens(self) -> int:
        return self.latent_frames * self.tokens_per_frame

    @property
    def video_frames(self) -> int:
        return video_frames(self.latent_frames)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.batch} x {self.heads} heads x {self.num_tokens} tokens "
            f"({self.latent_frames} latent frames x {self.tokens_per_frame}, "
            f"{self.width}x{self.height} px) x {self.head_dim}, {self.dtype}"
        )


SHAPES: dict[str, BenchShape] = {
    "quick": BenchShape("quick", heads=4, head_dim=64, latent_frames=4, width=512, height=512),
    "cpu": BenchShape("cpu", heads=8, head_dim=64, latent_frames=8, width=512, height=512),
    "wan480": BenchShape(
        "wan480", heads=40, head_dim=128, latent_frames=21, width=832, height=480, dtype="bfloat16"
    ),
    "wan720": BenchShape(
        "wan720", heads=40, head_dim=128, latent_frames=21, width=1280, height=720, dtype="bfloat16"
    ),
}


# ---------------------------------------------------------------------------- pose source
def _template_pose(width: int, height: int) -> np.ndarray:
    """``[133, 2]`` pixels: an upright speaker facing the camera, hands in front of the chest.

    Laid out in units of the frame height around the horizontal centre.
    """
    unit = np.zeros((s.NUM_KEYPOINTS, 2))
    cx = 0.5 * width / height
    body = {
        s.NOSE: (0.0, 0.27), s.LEFT_EYE: (0.035, 0.23), s.RIGHT_EYE: (-0.035, 0.23),
        s.LEFT_EAR: (0.08, 0.24), s.RIGHT_EAR: (-0.08, 0.24),
        s.LEFT_SHOULDER: (0.2, 0.52), s.RIGHT_SHOULDER: (-0.2, 0.52),
        s.LEFT_HIP: (0.14, 0.97), s.RIGHT_HIP: (-0.14, 0.97),
    }  # fmt: skip
    for i, (x, y) in body.items():
        unit[i] = (cx + x, y)
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)  # face contour + inner points
    radius = np.where(np.arange(68) < 17, 1.0, 0.55)
    unit[list(s.FACE)] = np.stack(
        [cx + 0.085 * radius * np.cos(angle), 0.25 + 0.11 * radius * np.sin(angle)], axis=1
    )
    return unit * height


def _smooth_noise(
    rng: np.random.Generator, n: int, fps: float, hz: tuple[float, float]
) -> np.ndarray:
    """``[n]`` smooth random signal in about [-1, 1]: three sinusoids with random rates/phases."""
    t = np.arange(n) / fps
    freqs = rng.uniform(*hz, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.uniform(0.5, 1.0, size=3)
    wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
    return wave / weights.sum()


def _hand_points(wrist: np.ndarray, direction: float, curl: float, size: float) -> np.ndarray:
    """21 hand points: the wrist, then five fingers of four joints fanning along ``direction``
    (radians); ``curl`` in [0, 1] shortens the fingers (a closing hand)."""
    pts = [wrist]
    for finger in range(5):
        a = direction + np.radians(-50 + 25 * finger)
        for joint in range(1, 5):
            r = size * (0.35 + 0.22 * joint) * (1.0 - 0.5 * curl)
            pts.append(wrist + r * np.array([np.cos(a), np.sin(a)]))
    return np.array(pts)


def synthetic_pose(
    num_frames: int, width: int, height: int, fps: float = 25.0, seed: int = 0
) -> PoseSequence:
    """A talking upper body: smooth random arm swings, hand turns and grips, head sway and nods.

    Arms are two-bone chains from the shoulders (upper arm and forearm angles follow slow
    random waves, 0.2-1.2 Hz); hands follow the forearm and open/close; the head translates
    and turns a little. Legs and feet are missing (confidence 0), as in a talking-head crop.
    """
    rng = np.random.default_rng(seed)
    base = _template_pose(width, height)
    kp = np.zeros((num_frames, s.NUM_KEYPOINTS, 3), dtype=np.float64)
    upper, fore, hand = 0.2 * height, 0.19 * height, 0.1 * height
    waves = {name: _smooth_noise(rng, num_frames, fps, (0.2, 1.2)) for name in (
        "lu", "lf", "ru", "rf", "lc", "rc", "hx", "hy", "ht", "bx")}  # fmt: skip
    head = [s.NOSE, s.LEFT_EYE, s.RIGHT_EYE, s.LEFT_EAR, s.RIGHT_EAR, *s.FACE]
    for t in range(num_frames):
        pts = base.copy()
        pts[:, 0] += 0.02 * height * waves["bx"][t]  # body sway
        neck = 0.5 * (pts[s.LEFT_SHOULDER] + pts[s.RIGHT_SHOULDER])
        turn = np.radians(8.0) * waves["ht"][t]
        rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        shift = 0.03 * height * np.array([waves["hx"][t], 0.5 * waves["hy"][t]])
        pts[head] = (pts[head] - neck) @ rot.T + neck + shift
        for side, sign in (("l", 1.0), ("r", -1.0)):
            shoulder = pts[s.LEFT_SHOULDER if side == "l" else s.RIGHT_SHOULDER]
            # Angles measured from pointing down; sign mirrors the right arm.
            a_upper = np.radians(25 + 30 * waves[side + "u"][t])
            a_fore = a_upper + np.radians(110 + 40 * waves[side + "f"][t])
            elbow = shoulder + upper * np.array([sign * np.sin(a_upper), np.cos(a_upper)])
            wrist = elbow + fore * np.array([sign * np.sin(a_fore), np.cos(a_fore)])
            direction = np.arctan2(wrist[1] - elbow[1], wrist[0] - elbow[0])
            curl = 0.5 + 0.5 * waves[side + "c"][t]
            fingers = _hand_points(wrist, direction, curl, hand)
            elbow_i, wrist_i, hand_i = (
                (s.LEFT_ELBOW, s.LEFT_WRIST, s.LEFT_HAND)
                if side == "l"
                else (s.RIGHT_ELBOW, s.RIGHT_WRIST, s.RIGHT_HAND)
            )
            pts[elbow_i], pts[wrist_i] = elbow, wrist
            pts[list(hand_i)] = fingers
        kp[t, :, :2] = pts
        kp[t, :, 2] = 0.9
    kp[:, 13:23, 2] = 0.0  # knees, ankles, feet: out of the crop
    kp[..., 0] = np.clip(kp[..., 0], 0, width - 1)
    kp[..., 1] = np.clip(kp[..., 1], 0, height - 1)
    return PoseSequence(kp.astype(np.float32), fps, width, height)


BENCH_TEXT = (
    "Attention to the right frames makes real time video possible, "
    "and the hands keep moving while we talk about it."
)
POSE_SOURCES = ("auto", "rules", "synthetic")


def motion_rules_available() -> bool:
    """True when the synthetic corpus's motion rules and espeak-ng speech are available."""
    if importlib.util.find_spec("cospeech.motion.rules") is None:
        return False
    from cospeech.audio.espeak import espeak_available

    return espeak_available()


def rules_pose(
    num_frames: int, width: int, height: int, fps: float = 25.0, seed: int = 0
) -> PoseSequence:
    """Speech motion from the corpus's rules: :data:`BENCH_TEXT` spoken by espeak-ng, its
    phoneme timings -> :func:`cospeech.motion.rules.generate_motion` around the template
    pose (lip sync, head nods, beat gestures, sway); cycled to ``num_frames``."""
    from cospeech.audio.espeak import synthesize
    from cospeech.motion.rules import generate_motion, sample_gesture_style

    utterance = synthesize(BENCH_TEXT)
    reference = synthetic_pose(1, width, height, fps, seed).keypoints[0]
    rng = np.random.default_rng(seed)
    motion = generate_motion(
        utterance.phonemes, utterance.duration, fps, reference, sample_gesture_style(rng), rng,
        width=width, height=height,
    )  # fmt: skip
    keypoints = motion.pose.keypoints[np.arange(num_frames) % len(motion.pose)]
    return PoseSequence(keypoints, fps, width, height)


def bench_pose(
    shape: BenchShape, pose_file: str | None = None, seed: int = 0, source: str = "auto"
) -> tuple[PoseSequence, str]:
    """The pose sequence for ``shape`` and a line saying where it came from.

    ``pose_file``: a :class:`PoseSequence` ``.npz``, cut or cycled to the shape's video
    frames, coordinates rescaled to the shape's frame size. Otherwise ``source``:
    ``rules`` (:func:`rules_pose`), ``synthetic`` (:func:`synthetic_pose`), or ``auto`` =
    rules when they and espeak-ng are available, else synthetic.
    """
    frames = shape.video_frames
    if pose_file is not None:
        pose = PoseSequence.load(pose_file)
        idx = np.arange(frames) % len(pose)
        kp = pose.keypoints[idx].copy()
        kp[..., 0] *= shape.width / pose.width
        kp[..., 1] *= shape.height / pose.height
        cycled = ", cycled" if len(pose) < frames else ""
        note = f"pose file {pose_file} ({len(pose)} frames{cycled})"
        return PoseSequence(kp, pose.fps, shape.width, shape.height), note
    if source not in POSE_SOURCES:
        raise InputError(f"pose source must be one of {', '.join(POSE_SOURCES)}, got {source!r}")
    if source == "rules" or (source == "auto" and motion_rules_available()):
        if not motion_rules_available():
            raise InputError("pose source 'rules' needs cospeech.motion.rules and espeak-ng")
        pose = rules_pose(frames, shape.width, shape.height, seed=seed)
        return pose, f"motion rules (cospeech.motion.rules) speaking {BENCH_TEXT!r} (seed {seed})"
    pose = synthetic_pose(frames, shape.width, shape.height, seed=seed)
    return pose, f"built-in synthetic upper body (seed {seed}): smooth random arm/hand/head motion"


def force_density(
    plan: SparsePlan, target: float, seed: int = 0, grouped: bool = True
) -> SparsePlan:
    """``plan`` with kept block pairs added or dropped at random to reach ``target`` density.

    Block pairs inside one frame (the dense same-frame attention of Eq. 3) always stay.
    The other pairs change in *units* of (query blocks, key block): with ``grouped``, the
    query blocks that share one key-block set in ``plan`` (a region of a frame) gain or
    lose a key block together, as they would with a wider region or another kept frame;
    otherwise each query block on its own (unstructured, the hard case for ``gather``).
    Pose-kept units go first, then the others, random within each; the density reached is
    the first at or above ``target`` (a unit may add several pairs) and never below the
    same-frame density.
    """
    if not 0 < target <= 1:
        raise InputError(f"target density must be in (0, 1], got {target}")
    nb, bs = plan.num_blocks, plan.block_size
    starts = torch.arange(nb) * bs
    first = plan.token_frame[starts]
    last = plan.token_frame[torch.clamp(starts + bs - 1, max=plan.num_tokens - 1)]
    keep = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])  # same frame
    current = plan.block_mask()
    groups: dict[tuple[int, ...], list[int]] = {}
    for qb in range(nb):
        key = tuple(current[qb].nonzero().flatten().tolist()) if grouped else (qb,)
        groups.setdefault(key, []).append(qb)
    members = [torch.tensor(m) for m in groups.values()]
    generator = torch.Generator().manual_seed(seed)
    score = torch.rand(len(members), nb, generator=generator)
    kept_now = torch.stack([current[m[0]] for m in members])
    order = (kept_now.double() * 2 + score.double()).flatten().argsort(descending=True)
    want, count = round(target * nb * nb), int(keep.sum())
    for unit in order.tolist():
        if count >= want:
            break
        rows, col = members[unit // nb], unit % nb
        count += int((~keep[rows, col]).sum())
        keep[rows, col] = True
    return plan.with_block_mask(keep)


# ---------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class BenchRow:
    backend: str
    seconds: float | None  # None: the backend could not run (see note)
    density: float
    speedup: float | None
    note: str = ""

    @property
    def ideal(self) -> float:
        return 1.0 / self.density

    @property
    def efficiency(self) -> float | None:
        return None if self.speedup is None else self.speedup * self.density


def run_bench(
    shape: BenchShape,
    plan: SparsePlan,
    backends: Iterable[str],
    repeats: int,
    device: torch.device,
    check: bool = False,
    backward: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Time unmasked SDPA (the baseline) and each backend on random ``q, k, v``.

    Every candidate is warmed up once (compiles, plan caches), then the candidates are
    timed in turns, ``repeats`` rounds, so a load change on a shared machine hits them
    alike; each gets the median of its rounds. ``backward``: time forward + backward
    (gradients of q, k, v); backends without autograd there are reported as skipped.
    """
    plan.check_length(shape.num_tokens)
    dtype = getattr(torch, shape.dtype)
    generator = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (
        torch.randn(shape.batch, shape.heads, shape.num_tokens, shape.head_dim,
                    generator=generator).to(device=device, dtype=dtype).requires_grad_(backward)
        for _ in range(3)
    )  # fmt: skip
    grad_out = torch.randn_like(q) if backward else None

    def timed(attention: Callable[[], torch.Tensor]) -> Callable[[], object]:
        if not backward:
            return attention
        return lambda: torch.autograd.grad(attention(), (q, k, v), grad_out)

    candidates = {SDPA_ROW: timed(lambda: F.scaled_dot_product_attention(q, k, v))}
    skipped: dict[str, str] = {}
    for backend in backends:
        candidates[backend] = timed(lambda b=backend: sparse_attention(q, k, v, plan, b))
    for name in list(candidates):
        if progress:
            progress(f"warm-up {name}")
        try:
            if name != SDPA_ROW:
                resolve_backend(name, device)
            candidates[name]()
        except InputError as exc:
            skipped[name] = str(exc)
            del candidates[name]
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for round_ in range(repeats):
        if progress:
            progress(f"round {round_ + 1}/{repeats}")
        for name, fn in candidates.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)

    base = statistics.median(times[SDPA_ROW])
    reference = None
    rows = [BenchRow(SDPA_ROW, base, 1.0, 1.0)]
    for backend in backends:
        if backend in skipped:
            rows.append(BenchRow(backend, None, plan.density, None, skipped[backend]))
            continue
        seconds = statistics.median(times[backend])
        note = ""
        if check:
            with torch.no_grad():
                if reference is None:
                    reference = sparse_attention(q.float(), k.float(), v.float(), plan, "dense")
                err = (sparse_attention(q, k, v, plan, backend).float() - reference).abs().max()
            note = f"max |err| vs dense masked fp32: {float(err):.1e}"
        rows.append(BenchRow(backend, seconds, plan.density, base / seconds, note))
    return rows


def format_table(rows: list[BenchRow]) -> str:
    """Plain-text table: backend, ms, block density, speedup, ideal 1/density, efficiency."""
    header = ("backend", "ms", "density", "speedup", "ideal", "efficiency", "note")
    lines = [header]
    for r in rows:
        lines.append((
            r.backend,
            "-" if r.seconds is None else f"{1000 * r.seconds:.1f}",
            f"{r.density:.3f}",
            "-" if r.speedup is None else f"{r.speedup:.2f}x",
            f"{r.ideal:.2f}x",
            "-" if r.efficiency is None else f"{100 * r.efficiency:.0f}%",
            r.note,
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]  # fmt: skip
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def default_backends(device: torch.device) -> list[str]:
    """Backends worth timing on ``device``."""
    if device.type == "cuda":
        names = ["flex", "gather"]
        from cospeech.attention.kernels import flashinfer_available

        return [*names, "flashinfer"] if flashinfer_available() else names
    return ["gather", "flex"]


def attention_flops(shape: BenchShape, density: float = 1.0) -> float:
    """FLOPs of the two attention matmuls (4 B H L^2 D), times the block density."""
    return 4.0 * shape.batch * shape.heads * shape.num_tokens**2 * shape.head_dim * density


def describe_plan(plan: SparsePlan) -> str:
    """One line: blocks, density, token-mask density."""
    return (
        f"{plan.num_blocks} blocks of {plan.block_size}, kept block pairs {plan.nnz} "
        f"(density {plan.density:.3f}), token-mask density {plan.token_density:.3f}, "
        f"{'exact' if plan.exact else 'pooled'} blocks"
    )
