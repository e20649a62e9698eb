"""The distilled causal student in generation: the chunked KV-cache sampler against an
uncached reference, offline vs streamed, bounded memory, one level in closed form, model
selection, attention ablations and the command's errors.

Everything runs tiny random DiTs at 32-64 px. Tolerances: the cached sampler and the
uncached reference run the same fp32 model, but attention over a concatenated cache sums in
another order than one forward over the visible frames (SDPA / segment groups vs the causal
or sparse layout): ~1e-6 per call, compounded over 3 levels, so ``rtol=1e-4, atol=1e-5``
on latents of order 1.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time

import numpy as np
import pytest
import torch

from cospeech.attention.pose_plan import pose_plan
from cospeech.cli import main
from cospeech.config import to_dict
from cospeech.diffusion import flow_to_x0, sigma_to_timestep, step_list_sigmas
from cospeech.errors import InputError
from cospeech.jsonfile import write_json
from cospeech.models import VIDEO_DIT_PRESETS, VideoDiT
from cospeech.models.i2v import (
    STUDENT_KIND,
    ConditionedFlow,
    StudentSampling,
    pose_maps,
    reference_pose_map,
    reference_slot,
)
from cospeech.pipeline.bundle import load_bundle, load_settings, model_source
from cospeech.pipeline.generate import GenerateOptions, image_to_tensor
from cospeech.pipeline.generator import Generator, Job, load_reference
from cospeech.pipeline.plans import ChunkPlans, PlanOptions
from cospeech.pipeline.student import ChunkConditions, StudentNoise, StudentSampler
from cospeech.pose import schema
from cospeech.pose.sequence import PoseSequence
from cospeech.shipped import ASSETS
from dit_fixture import randomise
from pipeline_fixture import EXAMPLE_SPEECH, tiny_models, write_speech_excerpt

EXAMPLES = ASSETS.parent.parent.parent / "examples"
IMAGE, POSE = EXAMPLES / "reference.png", EXAMPLES / "reference_pose.npz"
SIZE = 64
ARM = (schema.RIGHT_ELBOW, schema.RIGHT_WRIST, *schema.RIGHT_HAND)


def sampling(**overrides) -> StudentSampling:
    base = StudentSampling(
        kind=STUDENT_KIND, steps=[1000.0, 750.0, 500.0], shift=5.0, chunk_frames=2,
        cache_sink=1, cache_window=1, attention="sparse", k=2, block_size=16, window=6,
        size=SIZE, fps=25.0,
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def student_dit(num_layers: int = 2, seed: int = 0) -> VideoDiT:
    """A tiny random DiT whose blocks ignore the timestep (``time_projection`` = 0): a
    chunk's keys and values are then the same at t = 0 (the commit) and at its noise level,
    so a forward over clean context frames and the noisy chunk at one t is an uncached
    reference. The head keeps its timestep modulation; the pose encoders are random too."""
    config = dataclasses.replace(VIDEO_DIT_PRESETS["tiny"], num_layers=num_layers)
    model = VideoDiT(config).eval()
    randomise(model, std=0.1, seed=seed)
    with torch.no_grad():
        for param in model.time_projection.parameters():
            param.zero_()
    return model


def moving_keypoints(reference: np.ndarray, frames: int) -> np.ndarray:
    """``[frames, 133, 3]``: the reference pose with the right arm and hand waving (a
    non-rigid motion, so pose distances differ from frame to frame)."""
    out = np.repeat(reference[None].astype(np.float32), frames, axis=0)
    phase = np.sin(np.arange(frames) * 0.9)[:, None]
    out[:, ARM, 0] += (6.0 * phase).astype(np.float32)
    out[:, ARM, 1] -= (8.0 * np.abs(phase)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def reference():
    return load_reference(IMAGE, SIZE, POSE)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A model folder with the tiny teacher, the tiny VAE and a tiny student."""
    tiny = tiny_models(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("student-bundle")
    shutil.copytree(tiny / "teacher", root / "teacher")
    shutil.copytree(tiny / "vae", root / "vae")
    student_dit().save_pretrained(root / "student")
    write_json(root / "student" / "sampling.json", to_dict(sampling()))
    return root


@pytest.fixture(scope="module")
def gen(bundle_dir):
    return Generator.from_pretrained(bundle_dir)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    return write_speech_excerpt(EXAMPLE_SPEECH, folder / "speech-1.2s.wav", 1.2)


def conditions_of(vae, reference):
    """The reference slot and reference pose map of ``reference``."""
    slot = reference_slot(vae.encode(image_to_tensor(reference.image)))
    return slot, reference_pose_map(reference.keypoints, SIZE)


class Recording:
    """A :class:`StudentNoise` that keeps every draw by ``(level, start)``."""

    def __init__(self, shape, seed):
        self.noise, self.draws = StudentNoise(shape, seed), {}

    def __call__(self, level, start, stop):
        self.draws[level, start] = self.noise(level, start, stop)
        return self.draws[level, start]


def video_range(latent: int, frames: int) -> np.ndarray:
    """The video frames latent frame ``latent`` covers (clamped to the last): written here
    from the VAE's grouping, not taken from the pipeline."""
    if latent == 0:
        return np.array([0])
    return np.minimum(np.arange(4 * latent - 3, 4 * latent + 1), frames - 1)


def uncached_reference(
    model, spec, keypoints, slot, ref_pose, total, draws, levels, plans=None, warped=None
):
    """The student's chunks computed without a KV cache: for every chunk and level, one
    forward over the clean latents of the chunks still visible (the first ``cache_sink``
    and the last ``cache_window`` before it, in order, at compacted positions 0, 1, ...)
    followed by the noisy chunk, block-causal by chunks; the chunk's slice of the output is
    its flow. ``plans``: a :class:`ChunkPlans` for a sparse forward over the same frames;
    ``warped`` ``[1, C + 1, T, h, w]``: a warp condition, each latent frame its own."""
    sigmas = step_list_sigmas(spec.steps, spec.shift)[:levels].tolist()
    step, committed, outputs = spec.chunk_frames, [], []
    for start in range(0, total, step):
        stop = min(start + step, total)
        rest = committed[spec.cache_sink :]
        visible = committed[: spec.cache_sink] + (rest[-spec.cache_window :] if rest else [])
        frames = [f for a, b, _ in visible for f in range(a, b)] + list(range(start, stop))
        pose = pose_maps(keypoints[np.concatenate([video_range(f, len(keypoints))
                                                   for f in frames])], SIZE)  # fmt: skip
        forward = functools.partial(model, attention="causal", chunk_frames=step)
        if plans is not None:
            plan = plans([f for a, b, _ in visible for f in range(a, b)], range(start, stop))
            forward = functools.partial(model, plan=plan)
        first = frames[0] == 0
        x = draws[0, start]
        for index, sigma in enumerate(sigmas):
            context = torch.cat([latents for _, _, latents in visible] + [x], dim=2)
            channels = torch.cat([slot if first else torch.zeros_like(slot),
                                  slot.new_zeros(*slot.shape[:2], len(frames) - 1,
                                                 *slot.shape[3:])], dim=2)  # fmt: skip
            if warped is not None:
                channels = torch.cat([channels, warped[:, :, frames]], dim=1)
            t = torch.full((1,), sigma * 1000.0)
            flow = forward(torch.cat([context, channels], dim=1), t, pose=pose,
                           ref_pose=ref_pose if first else None)  # fmt: skip
            flow = flow[:, :, -(stop - start) :]
            x0 = x - sigma * flow
            if index + 1 < len(sigmas):
                eps = draws[index + 1, start]
                x = (1 - sigmas[index + 1]) * x0 + sigmas[index + 1] * eps
        committed.append((start, stop, x0))
        outputs.append(x0)
    return torch.cat(outputs, dim=2)


def run_sampler(model, spec, keypoints, reference, vae, total, levels, seed=0, attention="dense"):
    slot, ref_pose = conditions_of(vae, reference)
    side = SIZE // vae.space_stride
    noise = Recording((1, vae.latent_channels, side, side), seed)
    plans = None
    if attention != "dense":
        options = PlanOptions(attention, spec.k, spec.block_size, (1, 2, 2), vae.space_stride)
        plans = ChunkPlans(keypoints, SIZE, options, torch.device("cpu"))
    sampler = StudentSampler(
        model, spec, ChunkConditions(keypoints, SIZE, slot, ref_pose), total, levels=levels,
        shift=spec.shift, noise=noise, plans=plans,
    )  # fmt: skip
    chunks = list(sampler)
    return chunks, noise.draws, (slot, ref_pose)


@pytest.mark.parametrize(
    "layers, window, attention",
    [
        (2, 8, "dense"),  # no eviction: every earlier chunk stays visible
        (1, 1, "dense"),  # eviction: sink + 1 chunk (one layer: the cached keys of a chunk
        (1, 1, "sparse"),  # depend on it alone, so later contexts can rebuild them)
        (1, 1, "global"),
    ],
)
def test_cached_sampler_equals_an_uncached_reference(gen, reference, layers, window, attention):
    vae = gen.bundle.vae
    model = student_dit(layers, seed=layers)
    spec = sampling(cache_window=window)
    keypoints = moving_keypoints(reference.keypoints, 33)  # 9 latent frames: 5 chunks
    chunks, draws, (slot, ref_pose) = run_sampler(
        model, spec, keypoints, reference, vae, 9, levels=3, attention=attention
    )
    assert [c.start for c in chunks] == [0, 2, 4, 6, 8]
    plans = None
    if attention != "dense":
        options = PlanOptions(attention, spec.k, spec.block_size, (1, 2, 2), vae.space_stride)
        plans = ChunkPlans(keypoints, SIZE, options, torch.device("cpu"))
    with torch.no_grad():
        expected = uncached_reference(model, spec, keypoints, slot, ref_pose, 9, draws, 3, plans)
    got = torch.cat([c.latents for c in chunks], dim=2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_one_level_is_the_first_x0_prediction(gen, reference):
    """With one level a chunk is ``x0 = eps - sigma_0 v(eps, t_0)`` (sigma_0 = 1 for step
    1000): for the first chunk one plain model call on its start noise and conditions."""
    vae, model, spec = gen.bundle.vae, student_dit(2), sampling()
    keypoints = moving_keypoints(reference.keypoints, 9)  # 3 latent frames
    chunks, draws, (slot, ref_pose) = run_sampler(model, spec, keypoints, reference, vae, 3, 1)
    sigma = float(step_list_sigmas(spec.steps, spec.shift)[0])
    assert sigma == 1.0
    pose = pose_maps(keypoints[:5], SIZE)  # latent frames 0, 1 = video frames 0 .. 4
    eps = draws[0, 0]
    with torch.no_grad():
        flow = ConditionedFlow(model)(eps, sigma_to_timestep(torch.ones(1)), pose=pose,
                                      reference=slot, ref_pose=ref_pose)  # fmt: skip
    torch.testing.assert_close(chunks[0].latents, eps - flow, rtol=1e-5, atol=1e-6)
    assert set(draws) == {(0, 0), (0, 2)}  # one level: no re-noising draws
    torch.testing.assert_close(chunks[0].latents, flow_to_x0(eps, flow, sigma))


def test_the_cache_holds_sink_plus_window_chunks_however_long(gen, reference):
    """60 latent frames (237 video frames) in chunks of 2, sink 1, window 2: after the third
    chunk the cache holds exactly 3 chunks = 6 latent frames, and the plans' region memo
    stays as small."""
    vae, model = gen.bundle.vae, student_dit(1)
    spec = sampling(cache_window=2)
    keypoints = moving_keypoints(reference.keypoints, 237)
    options = PlanOptions("sparse", spec.k, spec.block_size, (1, 2, 2), vae.space_stride)
    plans = ChunkPlans(keypoints, SIZE, options, torch.device("cpu"))
    slot, ref_pose = conditions_of(vae, reference)
    side = SIZE // vae.space_stride
    sampler = StudentSampler(
        model, spec, ChunkConditions(keypoints, SIZE, slot, ref_pose), 60, levels=1,
        shift=spec.shift, noise=StudentNoise((1, vae.latent_channels, side, side), 0),
        plans=plans,
    )  # fmt: skip
    cached, memo = [], []
    for chunk in sampler:
        cached.append(chunk.cached)
        memo.append(len(plans.regions))
    assert len(cached) == 30
    assert cached[:3] == [2, 4, 6] and set(cached[2:]) == {6}
    assert max(memo) <= 8  # the held 6 frames and the chunk's 2


def test_default_cache_window_fills_one_training_window():
    from cospeech.pipeline.student import cache_window_chunks

    assert cache_window_chunks(sampling(cache_window=3)) == 3
    # the demo's training: 6 latent frames = 3 chunks of 2 = the sink, 1 chunk, the current
    assert cache_window_chunks(sampling(cache_window=0, window=6, chunk_frames=2)) == 1
    assert cache_window_chunks(sampling(cache_window=0, window=12, chunk_frames=3)) == 2
    assert cache_window_chunks(sampling(cache_window=0, window=2, chunk_frames=2)) == 1


def test_chunk_plans_without_eviction_are_the_whole_clip_causal_plan(reference):
    """Before any eviction, the chunk plan over the held frames + the chunk attends exactly
    what the whole clip's causal pose plan (the one the student trained with) allows."""
    keypoints = moving_keypoints(reference.keypoints, 29)  # 8 latent frames
    pose = PoseSequence(keypoints, 25.0, SIZE, SIZE)
    for attention in ("sparse", "global"):
        whole = pose_plan(pose, k=2, block_size=16, exact=True, causal=True,
                          local=attention == "sparse")  # fmt: skip
        plans = ChunkPlans(keypoints, SIZE, PlanOptions(attention, 2, 16, (1, 2, 2), 8), "cpu")
        for start in (0, 2, 4, 6):
            held, chunk = list(range(start)), list(range(start, start + 2))
            plan = plans(held, chunk)
            keys = list(range(start + 2))
            mine = plan.chunk_mask(keys[start:], keys, "cpu")
            theirs = whole.chunk_mask(chunk, held + chunk, "cpu")
            assert torch.equal(mine, theirs)


def _job(gen: Generator, reference, frames: int, **options) -> Job:
    return Job(
        options=gen.resolve(GenerateOptions(**options)), audio=np.zeros(0, np.float32),
        frames=frames, reference=reference,
        keypoints=moving_keypoints(reference.keypoints, frames), motion="test",
        started=time.perf_counter(), prepare_seconds=0.0,
    )  # fmt: skip


def test_model_selection(bundle_dir, gen):
    assert gen.kind == "student" and gen.settings.kind == STUDENT_KIND
    assert load_bundle(bundle_dir, model="teacher").kind == "teacher"
    assert load_settings(bundle_dir, "teacher").window == 3
    single = model_source(None, bundle_dir / "student")  # a trained student folder alone
    assert single.kind == "student" and single.vae == ASSETS / "vae"
    assert model_source(None, bundle_dir / "teacher").kind == "teacher"
    assert model_source().kind == "student"  # the shipped folder has one
    with pytest.raises(InputError, match="no student/ inside"):
        model_source(bundle_dir.parent / "tiny-models", "student")  # teacher + VAE only
    with pytest.raises(InputError, match="this bundle runs the distilled student"):
        _ = gen.bundle.teacher


def test_render_and_stream_give_the_same_frames(gen, speech, reference):
    """Offline is the stream's chunks collected: the same computation with the same seeds
    on one thread, so the frames are bit-identical (no tolerance needed)."""
    options = GenerateOptions(seed=3)
    result = gen(speech, IMAGE, reference_pose=POSE, options=options)
    stream = gen.stream(speech, IMAGE, reference_pose=POSE, options=options)
    streamed = np.concatenate([chunk.frames for chunk in stream])
    assert result.model == "student" and stream.model == "student"
    side = 2 * SIZE  # the photo layer's default output
    # Exact: offline collects the very chunks the stream yields (the same calls in the same
    # order in one process, the photo layer included), and the frames are uint8.
    assert result.video.shape == (30, side, side, 3) and np.array_equal(result.video, streamed)
    assert result.windows == stream.windows == 5  # 9 latent frames in chunks of 2
    assert result.steps == 3 and "by the student, 3 steps x 5 chunks" in result.summary()
    assert stream.first_chunk_seconds is not None and stream.peak_latent_frames <= 4 + 6
    assert result.attention == "sparse" and 0 < result.attention_density < 1


def test_fewer_levels_and_ranges(gen, reference):
    job = _job(gen, reference, 9, steps=1)
    assert gen.render(job).steps == 1
    with pytest.raises(InputError, match=r"--steps must be in \[1, 3\], got 4"):
        gen.resolve(GenerateOptions(steps=4))
    with pytest.raises(InputError, match="--guidance applies to the teacher"):
        gen.resolve(GenerateOptions(guidance=2.0))
    with pytest.raises(InputError, match="--attention must be one of dense, global, sparse"):
        gen.resolve(GenerateOptions(attention="bogus"))


def test_attention_ablations_student_and_teacher(bundle_dir, gen, reference):
    """global keeps at least what sparse keeps (the region mask only removes pairs) and
    the two plans differ; dense has no plan (density None)."""
    for generator in (gen, Generator.from_pretrained(bundle_dir, model="teacher")):
        densities, videos = {}, {}
        for attention in ("dense", "global", "sparse"):
            result = generator.render(_job(generator, reference, 17, attention=attention,
                                           steps=1))  # fmt: skip
            densities[attention], videos[attention] = result.attention_density, result.video
            assert result.attention == attention
        assert densities["dense"] is None
        assert 0 < densities["sparse"] < densities["global"] <= 1, densities
        # uint8 frames of two different masks: they must differ somewhere (an inequality,
        # which no rounding on another CPU can make equal for masks this different)
        assert not np.array_equal(videos["global"], videos["sparse"])


def test_the_teacher_is_the_default_of_a_folder_without_a_student(tmp_path):
    gen = Generator.from_pretrained(tiny_models(tmp_path))
    assert gen.kind == "teacher" and gen.resolve().attention == "dense"


CLI = ["generate", "--audio", "{speech}", "--image", str(IMAGE), "--reference-pose", str(POSE),
       "-o", "{out}"]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "{bundle}", "--steps", "0"], "--steps must be in [1, 3], got 0"),
        (["--model", "{bundle}", "--guidance", "2"], "--guidance applies to the teacher"),
        (["--model", "{bundle}", "--attention", "bogus"],
         "--attention must be one of dense, global, sparse, got 'bogus'"),
        (["--model", "{bundle}/nothing"], "neither teacher, student, a model folder"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(extra, message, speech, bundle_dir, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    argv = [a.format(speech=speech, out=out, bundle=bundle_dir) for a in CLI + extra]
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("cospeech: error: ") and message in err[0], err
    assert not out.exists()


def test_cli_streams_the_student_and_names_it(speech, bundle_dir, tmp_path, capsys):
    out = tmp_path / "s.mp4"
    argv = [a.format(speech=speech, out=out) for a in CLI]
    assert main([*argv, "--model", str(bundle_dir), "--stream", "--attention", "global"]) == 0
    line = capsys.readouterr().out
    assert "by the student" in line and "global attention (density" in line, line
    assert out.stat().st_size > 0
