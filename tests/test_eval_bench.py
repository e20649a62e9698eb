"""``cospeech eval bench`` on the tiny corpus with tiny random models (no student)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from cospeech.cli import build_parser, main
from cospeech.errors import InputError
from cospeech.eval.bench import (
    ROW_KEYS,
    ROWS,
    TABLE1,
    TABLE2,
    BenchOptions,
    bench,
    parse_rows,
)
from cospeech.eval.teacher import TeacherEvalOptions, evaluate_teacher
from cospeech.jsonfile import dumps
from cospeech.pipeline.bundle import SamplingSettings, load_bundle
from cospeech.pose.face68 import LEFT_EYE, NOSE_TIP, RIGHT_EYE, head_motion, head_turn
from pipeline_fixture import (
    CORPUS_SIZE,
    clip_with_split,
    tiny_corpus,
    tiny_models,
    write_speech_excerpt,
)

# The dense row and eval teacher run the same sampler on the same inputs; one torch thread
# keeps the two runs on the same kernels.
pytestmark = pytest.mark.usefixtures("single_thread_module")

FRAMES = 9
SPEECH_SECONDS = 1.0


def sparse_models(base: Path) -> Path:
    """The tiny models with plans fine enough for a 64x64 frame: 16 tokens per latent
    frame, blocks of 16 tokens, K = 1 (so the global and the local masks both drop pairs
    of the 3-latent-frame window)."""
    root = base / "tiny-models-sparse"
    if not root.is_dir():
        shutil.copytree(tiny_models(base), root)
        SamplingSettings(window=3, overlap=1, size=CORPUS_SIZE, steps=2, k=1,
                         block_size=16).save(root / "teacher")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.getbasetemp()
    corpus = tiny_corpus(base)
    folder = tmp_path_factory.mktemp("bench-inputs")
    photo = folder / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    test_clip = clip_with_split(corpus, "test")[0]
    speech = write_speech_excerpt(test_clip / "audio.wav", folder / "speech.wav", SPEECH_SECONDS)
    return {"corpus": corpus, "models": sparse_models(base), "photo": photo, "speech": speech,
            "folder": folder}  # fmt: skip


@pytest.fixture(scope="module")
def run(inputs) -> tuple[BenchOptions, dict, str, dict]:
    """One bench over every row: (options, report, the markdown, the JSON file's data)."""
    options = BenchOptions(
        corpus=inputs["corpus"], clips=1, frames=FRAMES, photos=(inputs["photo"],),
        audio=inputs["speech"], rows=ROW_KEYS, model_folder=inputs["models"],
        sparse_teacher=inputs["models"] / "teacher",  # the fine-tuned row: the same DiT here
    )  # fmt: skip
    out, json_out = inputs["folder"] / "results.md", inputs["folder"] / "results.json"
    report = bench(options, out, json_out, progress=False)
    return options, report, out.read_text(), json.loads(json_out.read_text())


def rows_by_key(report: dict) -> dict[str, dict]:
    return {row["key"]: row for row in report["rows"]}


def test_dense_row_scores_equal_eval_teacher_on_the_same_clip(run, inputs):
    """Table 1's dense row and ``eval teacher`` (its own sampler call and clip loop) on the
    same test clip: the same model, seed and settings give the same frames, up to float32
    rounding (1e-5 relative)."""
    _, report, _, _ = run
    bundle = load_bundle(inputs["models"], model="teacher")
    settings = bundle.settings
    teacher = evaluate_teacher(
        bundle, inputs["corpus"],
        TeacherEvalOptions(split="test", clips=1, frames=FRAMES, steps=settings.steps,
                           guidance=settings.guidance, shift=settings.shift,
                           overlap=settings.overlap, seed=0),
        progress=False,
    )  # fmt: skip
    dense = rows_by_key(report)["teacher"]
    assert [c["clip"] for c in dense["clips"]] == [c["clip"] for c in teacher["clips"]]
    for name in ("psnr", "ssim", "lipsync"):
        assert dense["synthetic"][name] == pytest.approx(teacher["mean"][name], rel=1e-5)


def test_every_row_ran_but_the_missing_student(run):
    _, report, _, _ = run
    rows = rows_by_key(report)
    assert list(rows) == list(ROW_KEYS)
    for student in ("student", "student-photo"):
        assert rows[student]["note"] is not None and "student" in rows[student]["note"]
    for key in ("teacher", "teacher-global", "teacher-sparse", "teacher-sparse-ft",
                "teacher-photo"):  # fmt: skip
        row = rows[key]
        assert row["note"] is None
        (clip,) = row["clips"]
        assert clip["frames"] == FRAMES
        assert row["synthetic"]["compute_fps"] == pytest.approx(FRAMES / clip["compute_seconds"])
        (photo,) = row["photos"]
        assert photo["frames"] == round(SPEECH_SECONDS * 25)  # the model's 25 fps
        assert 0 <= photo["face_rate"] <= 1
        # end to end holds the compute and more (loading, motion, writing)
        assert photo["seconds"] > photo["compute_seconds"] > 0
    # --sparse-teacher named the teacher itself: the same frames as the sparse row, so the
    # same scores (the same computation repeated, deterministic: equal bit for bit).
    for name in ("psnr", "ssim", "lipsync", "density"):
        assert (
            rows["teacher-sparse-ft"]["synthetic"][name]
            == rows["teacher-sparse"]["synthetic"][name]
        )
    # The photo layer's videos are twice the model's side; the model's own are its side.
    model_side = rows["teacher"]["photos"][0]["size"]
    assert rows["teacher-photo"]["photos"][0]["size"] == 2 * model_side


def test_density_is_none_for_dense_and_below_one_for_the_masks(run):
    _, report, _, _ = run
    rows = rows_by_key(report)
    assert rows["teacher"]["synthetic"]["density"] is None
    global_density = rows["teacher-global"]["synthetic"]["density"]
    sparse_density = rows["teacher-sparse"]["synthetic"]["density"]
    assert 0 < sparse_density < 1 and 0 < global_density < 1
    assert sparse_density <= global_density  # the local mask only removes pairs


def test_markdown_has_the_header_the_tables_and_the_not_run_row(run):
    _, report, text, _ = run
    assert f"```\n{report['command']}\n```" in text
    assert report["machine"] in text and report["date"] in text
    for header in (TABLE1, TABLE2):
        assert "| " + " | ".join(header) + " |" in text
    lines = text.splitlines()
    (photo,) = report["options"]["photos"]
    for label in ("dense teacher", "+ global mask", "+ global and local"):
        table1 = [line for line in lines if line.startswith(f"| {label} | ")]
        table2 = [line for line in lines if line.startswith(f"| {label} | {photo} | ")]
        assert len(table1) == 2 and table2 == table1[1:]  # one line in each table
        assert len(table1[0].split(" | ")) == len(TABLE1)
        assert len(table2[0].split(" | ")) == len(TABLE2)
    assert table1[0].startswith("| + global and local |")
    dense = next(line for line in lines if line.startswith("| dense teacher | "))
    assert dense.endswith(" | 1.00x | 1 (dense) |")
    student = [line for line in lines if line.startswith("| DMD student |")]
    assert len(student) == 2 and all("| not run |" in line for line in student)
    note = rows_by_key(report)["student"]["note"]
    assert f"- **DMD student** (`student`) not run: {note}" in text
    for paper_column in ("FID, FVD", "Sync-C, Sync-D", "E-FID", "HKD"):
        assert paper_column in text


def test_the_json_file_is_the_report_with_nan_as_null(run):
    _, report, _, written = run
    assert written == json.loads(dumps(report))
    teacher = rows_by_key(written)["teacher"]["clips"][0]
    assert teacher["hand_confidence"] is None  # a 64x64 frame of noise: no hand expected


def test_the_command_line_gives_back_the_same_options(run):
    options, report, _, _ = run
    words = shlex.split(report["command"])
    assert words[:3] == ["cospeech", "eval", "bench"]
    args = build_parser().parse_args(words[1:])
    assert Path(args.corpus) == options.corpus and args.clips == options.clips
    assert args.frames == options.frames and parse_rows(args.rows) == options.rows
    assert tuple(map(Path, args.photos)) == options.photos
    assert Path(args.audio) == options.audio
    assert Path(args.model_folder) == options.model_folder
    assert Path(args.sparse_teacher) == options.sparse_teacher


def test_the_fine_tuned_sparse_row_needs_its_model(inputs):
    options = BenchOptions(corpus=inputs["corpus"], rows=("teacher-sparse-ft",))
    row = next(row for row in ROWS if row.key == "teacher-sparse-ft")
    with pytest.raises(InputError, match="give --sparse-teacher DIR"):
        options.row_model(row)
    run = inputs["folder"]  # a folder, but no config.json + sampling.json in it
    with pytest.raises(InputError, match=r"--sparse-teacher .*: not a trained DiT folder"):
        BenchOptions(corpus=inputs["corpus"], sparse_teacher=run).row_model(row)


def test_head_motion_of_a_known_sway():
    """Both eyes move by ``a * t`` to the right: the eye centre's spread is ``a * std(t)``,
    over the inter-ocular distance ``d``; a frame without a face is left out."""
    steps, a, d = np.arange(10.0), 2.0, 40.0
    landmarks = np.zeros((11, 68, 2))
    landmarks[:10, RIGHT_EYE] = np.stack([100 + a * steps, np.full(10, 50.0)], axis=1)[:, None]
    landmarks[:10, LEFT_EYE] = landmarks[:10, RIGHT_EYE] + [d, 0.0]
    landmarks[10] = np.nan
    assert head_motion(landmarks) == pytest.approx(a * steps.std() / d, rel=1e-12)
    assert np.isnan(head_motion(landmarks[9:]))  # one frame with a face: no spread


def test_head_turn_sees_the_nose_move_against_the_eyes_not_a_shift():
    """A whole-face shift moves nothing relative to the eyes (turn 0); the nose tip moving
    by ``b * t`` sideways while the eyes stay gives ``b * std(t) / d``."""
    steps, a, b, d = np.arange(10.0), 2.0, 0.5, 40.0
    landmarks = np.zeros((10, 68, 2))
    landmarks[:, RIGHT_EYE] = np.stack([100 + a * steps, np.full(10, 50.0)], axis=1)[:, None]
    landmarks[:, LEFT_EYE] = landmarks[:, RIGHT_EYE] + [d, 0.0]
    landmarks[:, NOSE_TIP] = landmarks[:, RIGHT_EYE].mean(axis=1) + [d / 2, 20.0]
    assert head_turn(landmarks) == pytest.approx(0.0, abs=1e-12)
    landmarks[:, NOSE_TIP, 0] += b * steps
    assert head_turn(landmarks) == pytest.approx(b * steps.std() / d, rel=1e-12)


def test_eval_bench_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "bench", "--help"])
    assert exit_info.value.code == 0
    assert "usage: cospeech eval bench" in capsys.readouterr().out


def no_test_clips(corpus: Path, folder: Path) -> Path:
    """The corpus without its test split (the same clip folders)."""
    root = folder / "no-test"
    root.mkdir()
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["split"] != "test"]
    (root / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    for sub in ("clips", "identities"):
        (root / sub).symlink_to(corpus / sub)
    return root


@pytest.mark.parametrize("case", ["no corpus", "no test clips", "unreadable photo", "bad row"])
def test_bad_input_is_one_line_and_writes_nothing(case, inputs, tmp_path, capsys):
    corpus, photo = inputs["corpus"], inputs["photo"]
    if case == "no corpus":
        corpus = tmp_path / "nothing"
    elif case == "no test clips":
        corpus = no_test_clips(corpus, tmp_path)
    elif case == "unreadable photo":
        photo = tmp_path / "photo.png"
        photo.write_text("not an image")
    out = tmp_path / "results.md"
    argv = ["eval", "bench", "--corpus", str(corpus), "--clips", "1", "--frames", str(FRAMES),
            "--photos", str(photo), "--audio", str(inputs["speech"]),
            "--model-folder", str(inputs["models"]), "--out", str(out)]  # fmt: skip
    if case == "bad row":
        argv += ["--rows", "teacher,nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    expected = {
        "no corpus": "nothing/manifest.jsonl: no such file",
        "no test clips": "no clips in split 'test'",
        "unreadable photo": "photo.png: not an image",
        "bad row": "--rows: unknown row 'nope'",
    }[case]
    assert err.startswith("cospeech: error: ") and expected in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
