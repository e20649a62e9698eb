"""``cospeech.eval.teacher`` on the tiny corpus with tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from cospeech.data.clip_reader import read_frames
from cospeech.data.dataset import read_clips
from cospeech.data.manifest import POSE_NAME, VIDEO_NAME
from cospeech.errors import InputError
from cospeech.eval.lipsync import mouth_openness
from cospeech.eval.teacher import (
    TeacherEvalOptions,
    evaluate_teacher,
    pick_clips,
    vae_reconstruction,
)
from cospeech.eval.vae import evaluate_vae
from cospeech.motion.metrics import correlation
from cospeech.pipeline.bundle import load_bundle
from cospeech.pose.sequence import PoseSequence
from pipeline_fixture import tiny_corpus, tiny_models

# The tests recompute the report's VAE reconstructions (the same vae_reconstruction call on
# the same frames) and compare bit for bit: everything here runs on one torch thread.
pytestmark = pytest.mark.usefixtures("single_thread_module")


@pytest.fixture(scope="module")
def report(tmp_path_factory, single_thread_module):
    base = tmp_path_factory.getbasetemp()
    corpus, bundle = tiny_corpus(base), load_bundle(tiny_models(base))
    options = TeacherEvalOptions(split="train", clips=2, frames=9, steps=2, guidance=1.0)
    return corpus, bundle, evaluate_teacher(bundle, corpus, options, progress=False)


def test_vae_bound_scores_equal_scikit_image_and_the_mouth_measure(report):
    corpus, bundle, result = report
    assert [c["clip"] for c in result["clips"]] == [
        c.clip_id for c in pick_clips(corpus, "train", 2, 9)
    ]
    for score, clip in zip(result["clips"], pick_clips(corpus, "train", 2, 9), strict=True):
        truth = read_frames(clip.folder / VIDEO_NAME, 0, 9)
        recon = vae_reconstruction(bundle.vae, truth)
        psnr = np.mean(
            [
                peak_signal_noise_ratio(t, r, data_range=255)
                for t, r in zip(truth, recon, strict=True)
            ]
        )
        assert score["vae_psnr"] == pytest.approx(psnr, rel=1e-6)
        keypoints = PoseSequence.load(clip.folder / POSE_NAME).keypoints[:9]
        lipsync = correlation(mouth_openness(recon, keypoints), mouth_openness(truth, keypoints))
        np.testing.assert_equal(score["vae_lipsync"], lipsync)  # same computation; nan == nan


def test_means_count_an_undefined_correlation_as_zero(report):
    _, _, result = report
    for name in ("psnr", "ssim", "lipsync", "vae_psnr", "vae_ssim", "vae_lipsync"):
        values = np.nan_to_num([c[name] for c in result["clips"]], nan=0.0)
        assert result["mean"][name] == pytest.approx(values.mean())


def test_eval_vae_reports_the_same_reconstruction_scores_as_the_teacher_bound(report):
    corpus, bundle, result = report
    vae_report = evaluate_vae(bundle.vae, corpus, split="train", clips=2, frames=9, progress=False)
    for mine, bound in zip(vae_report["clips"], result["clips"], strict=True):
        assert mine["clip"] == bound["clip"]
        assert mine["psnr"] == pytest.approx(bound["vae_psnr"], rel=1e-9)
        assert mine["ssim"] == pytest.approx(bound["vae_ssim"], rel=1e-9)
        np.testing.assert_equal(mine["lipsync"], bound["vae_lipsync"])  # same computation
    expected = np.nan_to_num([c["lipsync"] for c in vae_report["clips"]], nan=0.0).mean()
    assert vae_report["mean"]["lipsync"] == pytest.approx(expected)


def test_pick_clips_takes_all_for_zero_and_refuses_a_negative_count(report):
    corpus = report[0]
    long_enough = [c.clip_id for c in read_clips(corpus, "train") if c.frames >= 9]
    assert sorted(c.clip_id for c in pick_clips(corpus, "train", 0, 9)) == sorted(long_enough)
    assert len(pick_clips(corpus, "train", 1, 9)) == 1
    with pytest.raises(InputError, match="clips must be >= 0"):
        pick_clips(corpus, "train", -1, 9)
