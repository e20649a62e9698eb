"""Reading and writing VideoDiT checkpoints: original Wan2.1, diffusers, and our own.

Formats read (a folder; safetensors only, pickles are refused without being opened):

- **original Wan2.1** (``Wan-AI/Wan2.1-*``): ``config.json`` with ``model_type``, ``dim``,
  ... (``_class_name: WanModel``) + ``diffusion_pytorch_model.safetensors`` or shards
  listed by ``diffusion_pytorch_model.safetensors.index.json``. Keys are our module names.
- **diffusers** (``Wan-AI/Wan2.1-*-Diffusers``, its ``transformer/`` folder, or the whole
  pipeline folder): ``config.json`` of ``WanTransformer3DModel`` + safetensors (single
  or sharded with an index); keys renamed by :data:`DIFFUSERS_TO_WAN`.
- **cospeech** (:func:`save_pretrained`): the original layout, ``config.json`` also
  holding the full :class:`VideoDiTConfig` under ``"cospeech"``, weights in
  ``model.safetensors``.

Loading builds the model on the meta device, checks every key and shape from the
safetensors headers first (one :class:`CheckpointError` lists all problems), then
materialises tensor by tensor (memory-mapped read, cast to ``dtype``, moved to
``device``, assigned), so a 14B checkpoint never exists twice in memory.

Like diffusers' ``ModelMixin``, the loader is generic over the model class:
:class:`PretrainedMixin` gives a class ``from_pretrained`` / ``save_pretrained``, and
this module never imports the model (``models.dit`` imports it, not the reverse).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cospeech.atomic import atomic_path, check_folder
from cospeech.config import from_dict, to_dict
from cospeech.errors import CheckpointError, InputError
from cospeech.jsonfile import read_json, write_json
from cospeech.models.checkpoint_checks import (
    is_pickle,
    mismatch_report,
    refuse_pickle,
    refuse_pickles_in,
)
from cospeech.models.config import VideoDiTConfig

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# diffusers name -> original Wan name. "{i}" is a block index. Prefix rules end in ".",
# the others match a whole key.
DIFFUSERS_TO_WAN: tuple[tuple[str, str], ...] = (
    ("patch_embedding.", "patch_embedding."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("condition_embedder.image_embedder.norm1.", "img_emb.proj.0."),
    ("condition_embedder.image_embedder.ff.net.0.proj.", "img_emb.proj.1."),
    ("condition_embedder.image_embedder.ff.net.2.", "img_emb.proj.3."),
    ("condition_embedder.image_embedder.norm2.", "img_emb.proj.4."),
    ("blocks.{i}.attn1.to_q.", "blocks.{i}.self_attn.q."),
    ("blocks.{i}.attn1.to_k.", "blocks.{i}.self_attn.k."),
    ("blocks.{i}.attn1.to_v.", "blocks.{i}.self_attn.v."),
    ("blocks.{i}.attn1.to_out.0.", "blocks.{i}.self_attn.o."),
    ("blocks.{i}.attn1.norm_q.", "blocks.{i}.self_attn.norm_q."),
    ("blocks.{i}.attn1.norm_k.", "blocks.{i}.self_attn.norm_k."),
    ("blocks.{i}.attn2.to_q.", "blocks.{i}.cross_attn.q."),
    ("blocks.{i}.attn2.to_k.", "blocks.{i}.cross_attn.k."),
    ("blocks.{i}.attn2.to_v.", "blocks.{i}.cross_attn.v."),
    ("blocks.{i}.attn2.to_out.0.", "blocks.{i}.cross_attn.o."),
    ("blocks.{i}.attn2.norm_q.", "blocks.{i}.cross_attn.norm_q."),
    ("blocks.{i}.attn2.norm_k.", "blocks.{i}.cross_attn.norm_k."),
    ("blocks.{i}.attn2.add_k_proj.", "blocks.{i}.cross_attn.k_img."),
    ("blocks.{i}.attn2.add_v_proj.", "blocks.{i}.cross_attn.v_img."),
    ("blocks.{i}.attn2.norm_added_k.", "blocks.{i}.cross_attn.norm_k_img."),
    ("blocks.{i}.norm2.", "blocks.{i}.norm3."),
    ("blocks.{i}.ffn.net.0.proj.", "blocks.{i}.ffn.0."),
    ("blocks.{i}.ffn.net.2.", "blocks.{i}.ffn.2."),
    ("blocks.{i}.scale_shift_table", "blocks.{i}.modulation"),
    ("proj_out.", "head.head."),
    ("scale_shift_table", "head.modulation"),
)
# diffusers keys dropped on load: defined by some exported I2V checkpoints, never used by
# diffusers' own forward (WanTransformer3DModel._keys_to_ignore_on_load_unexpected).
DIFFUSERS_IGNORED = ("blocks.{i}.attn2.norm_added_q.",)


def _rule_regex(template: str) -> re.Pattern[str]:
    body = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(body + ("(?P<rest>.+)" if template.endswith(".") else "") + "$")


_DIFFUSERS_RULES = [(_rule_regex(src), dst) for src, dst in DIFFUSERS_TO_WAN]
_DIFFUSERS_IGNORED = [_rule_regex(src) for src in DIFFUSERS_IGNORED]


def diffusers_to_wan_key(key: str) -> str | None:
    """The original Wan name of diffusers parameter ``key``; None if it has no counterpart."""
    for pattern, target in _DIFFUSERS_RULES:
        match = pattern.match(key)
        if match:
            groups = match.groupdict()
            name = target.replace("{i}", groups.get("i") or "")
            return name + (groups.get("rest") or "")
    return None


def _is_ignored_diffusers_key(key: str) -> bool:
    return any(pattern.match(key) for pattern in _DIFFUSERS_IGNORED)


# ---------------------------------------------------------------------- configs
def config_from_wan(data: dict[str, Any]) -> VideoDiTConfig:
    """VideoDiTConfig from an original Wan2.1 ``config.json`` (``WanModel``)."""
    model_type = data.get("model_type", "t2v")
    if model_type not in ("t2v", "i2v"):
        raise CheckpointError(f"Wan model_type {model_type!r} is not supported (t2v, i2v)")
    if list(data.get("window_size", [-1, -1])) != [-1, -1]:
        raise CheckpointError("Wan checkpoints with windowed attention are not supported")
    defaults = VideoDiTConfig()
    try:
        return VideoDiTConfig(
            dim=int(data["dim"]),
            ffn_dim=int(data["ffn_dim"]),
            num_heads=int(data["num_heads"]),
            num_layers=int(data["num_layers"]),
            patch_size=tuple(data.get("patch_size", defaults.patch_size)),
            in_dim=int(data["in_dim"]),
            out_dim=int(data["out_dim"]),
            text_dim=int(data.get("text_dim", defaults.text_dim)),
            text_len=int(data.get("text_len", defaults.text_len)),
            image_dim=1280 if model_type == "i2v" else 0,
            freq_dim=int(data.get("freq_dim", defaults.freq_dim)),
            cross_attn_norm=bool(data.get("cross_attn_norm", True)),
            qk_norm=bool(data.get("qk_norm", True)),
            eps=float(data.get("eps", defaults.eps)),
        )
    except KeyError as exc:
        raise CheckpointError(f"Wan config.json lacks {exc.args[0]!r}") from None
    except InputError as exc:
        raise CheckpointError(f"Wan config.json: {exc}") from None


def config_from_diffusers(data: dict[str, Any]) -> VideoDiTConfig:
    """VideoDiTConfig from a diffusers ``WanTransformer3DModel`` ``config.json``."""
    if data.get("pos_embed_seq_len") is not None:
        raise CheckpointError("first-last-frame Wan models (pos_embed_seq_len) are not supported")
    qk_norm = data.get("qk_norm", "rms_norm_across_heads")
    if qk_norm not in ("rms_norm_across_heads", None):
        raise CheckpointError(f"diffusers qk_norm {qk_norm!r} is not supported")
    try:
        dim = int(data["num_attention_heads"]) * int(data["attention_head_dim"])
        added = data.get("added_kv_proj_dim")
        if added is not None and int(added) != dim:
            raise CheckpointError(f"added_kv_proj_dim {added} != model dim {dim}: not Wan2.1")
        image_dim = data.get("image_dim")
        return VideoDiTConfig(
            dim=dim,
            ffn_dim=int(data["ffn_dim"]),
            num_heads=int(data["num_attention_heads"]),
            num_layers=int(data["num_layers"]),
            patch_size=tuple(data.get("patch_size", (1, 2, 2))),
            in_dim=int(data["in_channels"]),
            out_dim=int(data.get("out_channels") or data["in_channels"]),
            text_dim=int(data["text_dim"]),
            image_dim=int(image_dim) if image_dim is not None else 0,
            freq_dim=int(data["freq_dim"]),
            cross_attn_norm=bool(data.get("cross_attn_norm", True)),
            qk_norm=qk_norm is not None,
            eps=float(data.get("eps", 1e-6)),
            rope_max_positions=int(data.get("rope_max_seq_len", 1024)),
        )
    except KeyError as exc:
        raise CheckpointError(f"diffusers config.json lacks {exc.args[0]!r}") from None
    except InputError as exc:
        raise CheckpointError(f"diffusers config.json: {exc}") from None


def wan_config_dict(config: VideoDiTConfig) -> dict[str, Any]:
    """The original Wan ``config.json`` fields for ``config`` (plus ours under "cospeech")."""
    return {
        "_class_name": "WanModel",
        "model_type": "i2v" if config.has_image_tokens else "t2v",
        "patch_size": list(config.patch_size),
        "text_len": config.text_len,
        "in_dim": config.in_dim,
        "dim": config.dim,
        "ffn_dim": config.ffn_dim,
        "freq_dim": config.freq_dim,
        "text_dim": config.text_dim,
        "out_dim": config.out_dim,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "window_size": [-1, -1],
        "qk_norm": config.qk_norm,
        "cross_attn_norm": config.cross_attn_norm,
        "eps": config.eps,
        "cospeech": to_dict(config),
    }


# ---------------------------------------------------------------------- files
def _resolve_folder(path: Path) -> Path:
    if path.is_file():
        if is_pickle(path):
            refuse_pickle(path)
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: no such folder")
    if not (path / CONFIG_NAME).is_file() and (path / "transformer" / CONFIG_NAME).is_file():
        path = path / "transformer"
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(f"checkpoint {path}: no {CONFIG_NAME}")
    return path


def _weight_files(folder: Path) -> list[Path]:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise CheckpointError(
            f"checkpoint {folder}: several index files {[p.name for p in indexes]}"
        )
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{indexes[0]}: not a safetensors index ({exc})") from None
        names = sorted(set(weight_map.values()))
        files = [folder / name for name in names]
        bad = [n for n in names if Path(n).name != n or not (folder / n).is_file()]
        if bad:
            raise CheckpointError(f"{indexes[0].name}: shard(s) missing or outside: {bad}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    refuse_pickles_in(folder)
    raise CheckpointError(f"checkpoint {folder}: no .safetensors weights")


def read_config(folder: Path) -> VideoDiTConfig:
    """The VideoDiTConfig of a model folder's ``config.json`` (Wan, diffusers or this
    project's; fields it does not name take their defaults)."""
    return _read_config(folder)[0]


def _read_config(folder: Path) -> tuple[VideoDiTConfig, str]:
    data = read_json(folder / CONFIG_NAME, CheckpointError)
    if not isinstance(data, dict):
        raise CheckpointError(f"{folder / CONFIG_NAME}: expected a JSON object")
    if data.get("_class_name") == "WanTransformer3DModel":
        return config_from_diffusers(data), "diffusers"
    if isinstance(data.get("cospeech"), dict):
        try:
            return from_dict(VideoDiTConfig, data["cospeech"], ".cospeech"), "wan"
        except InputError as exc:
            raise CheckpointError(f"{folder / CONFIG_NAME}: {exc}") from None
    if data.get("_class_name", "WanModel") == "WanModel" and "dim" in data:
        return config_from_wan(data), "wan"
    raise CheckpointError(f"{folder / CONFIG_NAME}: neither a Wan2.1 nor a diffusers Wan config")


# ---------------------------------------------------------------------- load
def _index_checkpoint(
    files: list[Path], layout: str, expected: dict[str, torch.Size], optional: tuple[str, ...]
) -> dict[str, tuple[Path, str]]:
    """Map every model parameter name to (file, stored key), validating names and shapes."""
    found: dict[str, tuple[Path, str]] = {}
    unknown: list[str] = []
    wrong: list[str] = []
    for file in files:
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    if layout == "diffusers" and _is_ignored_diffusers_key(key):
                        continue
                    name = diffusers_to_wan_key(key) if layout == "diffusers" else key
                    if name is None or name not in expected:
                        unknown.append(key)
                        continue
                    shape = tuple(handle.get_slice(key).get_shape())
                    if shape != tuple(expected[name]):
                        wrong.append(f"{key} {list(shape)} != {list(expected[name])}")
                    found[name] = (file, key)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from None
    missing = set(expected) - set(found)
    pose_missing = {n for n in missing if n.startswith(optional)}
    for prefix in optional:
        group = {n for n in expected if n.startswith(prefix)}
        if group & pose_missing and not group <= pose_missing:
            pose_missing -= group  # partly present: a broken checkpoint, report it
    missing -= pose_missing
    problems = mismatch_report(missing, unknown, wrong)
    if problems:
        where = files[0].parent
        raise CheckpointError(
            f"checkpoint {where} ({layout} layout) does not fit the model: {problems}"
        )
    return found


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = module._parameters[leaf]
    assert old is not None
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=old.requires_grad)


class PretrainedMixin(nn.Module):
    """``from_pretrained`` / ``save_pretrained`` for a model class built from a
    :class:`VideoDiTConfig` (``cls(config)``) with Wan2.1 parameter names.

    ``OPTIONAL_PREFIXES``: parameter groups a Wan release lacks (our pose encoders); each
    names a submodule with an ``init_weights()``, run when the checkpoint has none of it.
    """

    OPTIONAL_PREFIXES: tuple[str, ...] = ()
    config: VideoDiTConfig

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> ModelT:
        """Load a Wan2.1 (original or diffusers layout) or cospeech checkpoint folder."""
        return load_pretrained(cls, path, dtype=dtype, device=device)

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (original Wan layout) atomically."""
        save_pretrained(self, path)


ModelT = TypeVar("ModelT", bound=PretrainedMixin)


def load_pretrained(
    model_class: type[ModelT],
    path: str | Path,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ModelT:
    """Load a checkpoint folder (see the module docstring) into a new ``model_class``.

    Weights of ``model_class.OPTIONAL_PREFIXES`` absent from the checkpoint (the pose
    encoders, in any Wan release) are initialised (zero output projection) and logged;
    every other absent, unexpected or misshapen key raises one :class:`CheckpointError`
    listing them.
    """
    folder = _resolve_folder(Path(path))
    files = _weight_files(folder)
    config, layout = _read_config(folder)
    device = torch.device(device)
    with torch.device("meta"):
        model = model_class(config)  # type: ignore[call-arg]
    expected = {name: p.shape for name, p in model.named_parameters()}
    found = _index_checkpoint(files, layout, expected, model_class.OPTIONAL_PREFIXES)
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for name, (file, key) in found.items():
        by_file.setdefault(file, []).append((name, key))
    for file, entries in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name, key in entries:
                _assign(model, name, handle.get_tensor(key).to(device=device, dtype=dtype))
    for prefix in model_class.OPTIONAL_PREFIXES:
        encoder = prefix.rstrip(".")
        if hasattr(model, encoder) and not any(n.startswith(prefix) for n in found):
            module = getattr(model, encoder).to_empty(device=device).to(dtype)
            module.init_weights()
            log.warning(
                "%s: no %s weights in the checkpoint; initialised with a zero output layer "
                "(the model behaves as without pose conditioning until trained)",
                folder,
                encoder,
            )
    return model.eval()


# ---------------------------------------------------------------------- save
def save_pretrained(model: PretrainedMixin, path: str | Path) -> None:
    """Write ``config.json`` + ``model.safetensors`` (original Wan key names) into ``path``.

    Each file is written atomically (temporary file + rename), weights first.
    """
    folder = Path(path)
    check_folder(folder, "model folder")
    state = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    write_json(folder / CONFIG_NAME, wan_config_dict(model.config))
