"""Model files (safetensors weights + JSON card) and trainer checkpoints, without pickle.

A generator is stored as ``NAME.safetensors`` (weights, fp32 or fp16) next
to ``NAME.json`` (the model card, see ``docs/CONTRACTS.md``). Loading checks
the card, the SHA-256 of the weights file and that every tensor fits the
architecture the card describes, and reports any problem as a one-line
:class:`~geogan.errors.ModelError`.

Trainer checkpoints (:func:`save_training_state`) hold arbitrary nested
dicts/lists of tensors and JSON scalars, such as ``optimizer.state_dict()``:
tensors go to ``NAME.safetensors`` and the structure (with the scalars and
key types) to ``NAME.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import ModelError, OutputError
from .postprocess import apply_postprocess
from .registry import GENERATOR_ARCHS, build_generator

__all__ = [
    "MODEL_FORMAT",
    "TRAIN_STATE_FORMAT",
    "SCHEMA_V1_CLASSES",
    "OUTPUT_CHANNELS",
    "model_paths",
    "sha256_file",
    "validate_card",
    "save_generator",
    "load_generator",
    "save_training_state",
    "load_training_state",
]

#: ``card["format"]`` of model cards this module writes and reads.
MODEL_FORMAT = "geogan-model/1"
#: ``format`` of trainer checkpoint side files.
TRAIN_STATE_FORMAT = "geogan-train-state/1"

#: Class names of the class schema version 1 (``docs/CONTRACTS.md``), the
#: default set that ``card["schema_to_model"]`` must cover.
SCHEMA_V1_CLASSES = (
    "background", "building", "road", "path", "railway", "water",
    "woodland", "grass", "farmland", "impervious", "bare", "wetland",
)  # fmt: skip

#: Channels per entry of ``card["outputs"]``.
OUTPUT_CHANNELS = {"rgb": 3, "height": 1}
_VALID_OUTPUTS = (["rgb"], ["rgb", "height"])
_REQUIRED_KEYS = (
    "format", "name", "arch", "arch_params", "classes", "schema_to_model",
    "outputs", "gsd_m", "weights_sha256", "license",
)  # fmt: skip
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------- helpers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Return ``(card_path, weights_path)`` for a ``.json``, ``.safetensors`` or stem path."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


T = TypeVar("T")


def _atomic_write(path: Path, write: Callable[[Path], T]) -> T:
    """Run ``write(tmp)`` and rename ``tmp`` to ``path``; on failure leave nothing behind."""
    tmp = _tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result = write(tmp)
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"{path}: cannot write ({_first_line(exc)}); "
            f"check the directory exists and is writable"
        ) from None
    return result


def _write_json(path: Path, obj) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False)
            fh.write("\n")

    _atomic_write(path, write)


def _write_safetensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> str:
    """Write tensors atomically; return the file's SHA-256."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> str:
        save_file(tensors, str(tmp), metadata=metadata)
        return sha256_file(tmp)

    return _atomic_write(path, write)


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise ModelError(
            f"{what} {path}: corrupt or truncated safetensors file ({_first_line(exc)}); "
            f"re-download or re-export it"
        ) from None


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"{what} {path}: not readable JSON ({_first_line(exc)}); re-export the model"
        ) from None
    if not isinstance(obj, dict):
        raise ModelError(f"{what} {path}: top level must be a JSON object; re-export the model")
    return obj


def _positive_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


# ----------------------------------------------------------------- model card


def validate_card(
    card: Mapping,
    schema_classes: Sequence[str] | None = None,
    where: str = "model card",
) -> None:
    """Check a model card's keys, types and class mapping.

    Parameters
    ----------
    card : dict
        Parsed model card.
    schema_classes : sequence of str, optional
        Class names ``schema_to_model`` must cover; default
        :data:`SCHEMA_V1_CLASSES`.
    where : str
        Name of the card in messages (usually its path).

    Raises
    ------
    ModelError
        One line naming the first problem found.
    """
    schema = tuple(SCHEMA_V1_CLASSES if schema_classes is None else schema_classes)

    def fail(problem: str, fix: str = "fix the card or re-export the model") -> None:
        raise ModelError(f"{where}: {problem}; {fix}")

    if not isinstance(card, Mapping):
        fail(f"must be a JSON object, got {type(card).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in card]
    if missing:
        fail(f"missing key(s) {', '.join(missing)}")
    if card["format"] != MODEL_FORMAT:
        fail(
            f"format {card['format']!r} is not {MODEL_FORMAT!r}",
            "use a model made for this geogan version",
        )
    if not isinstance(card["name"], str) or not card["name"]:
        fail("name must be a non-empty string")
    if not isinstance(card["arch"], str) or card["arch"] not in GENERATOR_ARCHS:
        fail(f"unknown arch {card['arch']!r} (known: {', '.join(GENERATOR_ARCHS)})")
    if not isinstance(card["arch_params"], Mapping):
        fail("arch_params must be an object of keyword arguments")
    classes = card["classes"]
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c for c in classes)
    ):
        fail("classes must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        fail("classes contains duplicate names")
    mapping = card["schema_to_model"]
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        fail("schema_to_model must map schema class names to model class names")
    uncovered = [name for name in schema if name not in mapping]
    if uncovered:
        fail(f"schema_to_model does not map schema class(es) {', '.join(uncovered)}")
    unknown = sorted({v for v in mapping.values() if v not in classes})
    if unknown:
        fail(f"schema_to_model maps to class(es) {', '.join(unknown)} not in classes")
    outputs = card["outputs"]
    if outputs not in _VALID_OUTPUTS:
        fail(f"outputs must be [\"rgb\"] or [\"rgb\", \"height\"], got {outputs!r}")
    if "height" in outputs and not _positive_number(card.get("height_scale_m")):
        fail("outputs include height but height_scale_m is missing or not a positive number")
    if not _positive_number(card["gsd_m"]):
        fail(f"gsd_m must be a positive number, got {card['gsd_m']!r}")
    sha = card["weights_sha256"]
    if not isinstance(sha, str) or not _HEX64.match(sha):
        fail("weights_sha256 must be 64 lowercase hex digits")
    if not isinstance(card["license"], str):
        fail("license must be a string")
    for key in ("training", "metrics"):
        if key in card and not isinstance(card[key], Mapping):
            fail(f"{key} must be an object")


def _expected_channels(card: Mapping) -> tuple[int, int]:
    return len(card["classes"]), sum(OUTPUT_CHANNELS[o] for o in card["outputs"])


def _check_fits(module: nn.Module, card: Mapping, where: str) -> None:
    """Module channels must match the card's classes and outputs."""
    n_in, n_out = _expected_channels(card)
    if getattr(module, "in_channels", None) != n_in:
        raise ModelError(
            f"{where}: class mismatch: {n_in} classes but arch_params give "
            f"{getattr(module, 'in_channels', None)} input channels; fix classes or arch_params"
        )
    if getattr(module, "out_channels", None) != n_out:
        raise ModelError(
            f"{where}: outputs {card['outputs']} need {n_out} channels but arch_params give "
            f"{getattr(module, 'out_channels', None)}; fix outputs or arch_params"
        )


def _compare_state(reference: Mapping, found: Mapping, where: str) -> None:
    """Raise a one-line 'wrong architecture' ModelError if names or shapes differ."""
    missing = [k for k in reference if k not in found]
    extra = [k for k in found if k not in reference]
    wrong = [
        f"{k} {list(found[k].shape)} (expected {list(reference[k].shape)})"
        for k in reference
        if k in found and tuple(found[k].shape) != tuple(reference[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) e.g. {missing[0]}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) e.g. {extra[0]}")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape e.g. {wrong[0]}")
    if problems:
        raise ModelError(
            f"{where}: wrong architecture, weights do not fit arch/arch_params: "
            f"{'; '.join(problems)}; use the card that belongs to these weights"
        )


def _check_finite(tensor: torch.Tensor, key: str, weights_path: Path) -> None:
    """NaN or inf weights (a diverged training run) would render black; refuse them at load."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ModelError(
            f"model '{weights_path.name}' holds NaN/inf weights in '{key}'; "
            f"retrain it or restore the file from a good copy ({weights_path})"
        )


def save_generator(
    module: nn.Module,
    card: Mapping,
    path_stem: str | os.PathLike,
    fp16: bool = False,
    schema_classes: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write a generator as ``STEM.safetensors`` + ``STEM.json``.

    Parameters
    ----------
    module : torch.nn.Module
        Generator whose state dict fits ``build_generator(card["arch"], card["arch_params"])``.
    card : dict
        Model card (``docs/CONTRACTS.md``) without (or with a stale)
        ``weights_sha256``; ``format`` and ``weights_sha256`` are filled in.
        The caller's dict is not modified.
    path_stem : str or os.PathLike
        Output stem; a ``.json`` / ``.safetensors`` suffix is stripped.
    fp16 : bool, default False
        Store floating-point tensors as float16 (half the size; cast back to
        float32 on load).
    schema_classes : sequence of str, optional
        Passed to :func:`validate_card`.

    Returns
    -------
    (weights_path, card_path) : tuple of pathlib.Path

    Raises
    ------
    ModelError
        If the card is invalid, not JSON-serialisable or does not describe ``module``.
    OutputError
        If the files cannot be written.

    Notes
    -----
    Files are written under temporary names and renamed, so a crash never
    leaves a half-written file under the final name. Builds one reference
    network from the card to check it (memory: one extra copy of the model).
    """
    card_path, weights_path = model_paths(path_stem)
    where = f"model card for {card_path}"
    if not isinstance(module, nn.Module):
        raise ModelError(f"{where}: module must be a torch.nn.Module, got {type(module).__name__}")
    try:
        out_card = json.loads(json.dumps(dict(card), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{where}: not JSON-serialisable ({_first_line(exc)}); "
            f"use plain numbers, strings, lists and dicts"
        ) from None
    out_card["format"] = MODEL_FORMAT
    out_card["weights_sha256"] = "0" * 64  # placeholder while validating
    validate_card(out_card, schema_classes, where)
    reference = build_generator(out_card["arch"], out_card["arch_params"])
    _check_fits(reference, out_card, where)
    state = module.state_dict()
    _compare_state(reference.state_dict(), state, where)
    del reference

    tensors = {}
    for key, value in state.items():
        value = value.detach().to("cpu")
        if fp16 and value.is_floating_point():
            value = value.to(torch.float16)
        tensors[key] = value.contiguous().clone()
    metadata = {"format": MODEL_FORMAT, "name": str(out_card["name"])}
    out_card["weights_sha256"] = _write_safetensors(weights_path, tensors, metadata)
    _write_json(card_path, out_card)
    return weights_path, card_path


def load_generator(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    schema_classes: Sequence[str] | None = None,
) -> tuple[nn.Module, dict]:
    """Load and check a generator written by :func:`save_generator`.

    Parameters
    ----------
    path : str or os.PathLike
        ``NAME.json``, ``NAME.safetensors`` or the stem ``NAME``.
    device : str or torch.device, default "cpu"
        Where to put the module.
    schema_classes : sequence of str, optional
        Class names ``schema_to_model`` must cover (default :data:`SCHEMA_V1_CLASSES`).

    Returns
    -------
    (module, card)
        The generator in eval mode with float32 weights, and the card dict.

    Raises
    ------
    ModelError
        One line for: a missing file, unreadable JSON, an invalid card, a
        SHA-256 mismatch, a corrupt or truncated safetensors file, a class or
        output mismatch, weights that do not fit the architecture, or NaN/inf
        weights.

    Notes
    -----
    Never unpickles: weights are read with safetensors only. The whole
    weights file is read twice (hash, then tensors).
    """
    card_path, weights_path = model_paths(path)
    for p, what in ((card_path, "model card"), (weights_path, "model weights")):
        if not p.is_file():
            raise ModelError(
                f"{what} {p}: file not found; pass the path of an existing NAME.json model"
            )
    card = _read_json(card_path, "model card")
    where = f"model card {card_path}"
    validate_card(card, schema_classes, where)

    digest = sha256_file(weights_path)
    if digest != card["weights_sha256"]:
        _read_safetensors(weights_path, "model weights")  # a parse error is the better message
        raise ModelError(
            f"model weights {weights_path}: SHA-256 {digest[:12]}... does not match the card's "
            f"{card['weights_sha256'][:12]}...; the file was changed or belongs to another card"
        )
    tensors = _read_safetensors(weights_path, "model weights")

    try:
        module = build_generator(card["arch"], card["arch_params"])
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    _check_fits(module, card, where)
    reference = module.state_dict()
    _compare_state(reference, tensors, f"model weights {weights_path}")
    state = {}
    for key, value in tensors.items():
        target = reference[key].dtype
        if value.is_floating_point() != reference[key].is_floating_point():
            raise ModelError(
                f"model weights {weights_path}: tensor {key} has dtype {value.dtype}, expected "
                f"{target}; re-export the model"
            )
        state[key] = value.to(target)
        _check_finite(state[key], key, weights_path)
    module.load_state_dict(state, strict=True)
    module.to(device)
    module.eval()
    return apply_postprocess(module, card, where, card_path.parent), card


# ------------------------------------------------------------ training state


def _encode(obj, path: str, store: dict[str, torch.Tensor]):
    """Turn a nested structure into JSON, moving tensors into ``store``."""
    if isinstance(obj, torch.Tensor):
        name = path or "tensor"
        if name in store:
            n = 2
            while f"{name}#{n}" in store:
                n += 1
            name = f"{name}#{n}"
        store[name] = obj.detach().to("cpu").contiguous().clone()
        return {"tensor": name}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(
                    f"save_training_state: key {key!r} at {path or '<root>'} is a "
                    f"{type(key).__name__}; use str or int keys"
                )
            items.append([key, _encode(value, f"{path}.{key}" if path else str(key), store)])
        if isinstance(obj, OrderedDict):
            # state_dict() is an OrderedDict whose _metadata holds module versions.
            node = {"odict": items}
            metadata = getattr(obj, "_metadata", None)
            if metadata is not None:
                node["_metadata"] = _encode(dict(metadata), f"{path}._metadata", store)
            return node
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        encoded = [
            _encode(value, f"{path}.{i}" if path else str(i), store) for i, value in enumerate(obj)
        ]
        return {"tuple" if isinstance(obj, tuple) else "list": encoded}
    raise TypeError(
        f"save_training_state: value at {path or '<root>'} is a {type(obj).__name__}; "
        f"store tensors, numbers, strings, None, lists, tuples or dicts"
    )


def _decode(node, tensors: dict[str, torch.Tensor], where: str):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and "odict" in node and set(node) <= {"odict", "_metadata"}:
        result = OrderedDict(_decode({"dict": node["odict"]}, tensors, where))
        if "_metadata" in node:
            result._metadata = _decode(node["_metadata"], tensors, where)
        return result
    if isinstance(node, dict) and len(node) == 1:
        (kind, body), = node.items()
        if kind == "tensor" and isinstance(body, str):
            if body not in tensors:
                raise ModelError(
                    f"{where}: tensor {body} listed in the JSON is missing; "
                    f"the files do not belong together"
                )
            return tensors[body]
        if kind == "dict" and isinstance(body, list):
            if not all(isinstance(item, list) and len(item) == 2 for item in body):
                raise ModelError(f"{where}: malformed dict entry; the file is corrupt")
            return {key: _decode(value, tensors, where) for key, value in body}
        if kind == "list" and isinstance(body, list):
            return [_decode(value, tensors, where) for value in body]
        if kind == "tuple" and isinstance(body, list):
            return tuple(_decode(value, tensors, where) for value in body)
    raise ModelError(f"{where}: unrecognised entry {str(node)[:60]!r}; the file is corrupt")


def save_training_state(
    path: str | os.PathLike, tensors: Mapping, meta: Mapping
) -> tuple[Path, Path]:
    """Write a trainer checkpoint as ``STEM.safetensors`` + ``STEM.json``.

    Parameters
    ----------
    path : str or os.PathLike
        Output stem (a ``.json`` / ``.safetensors`` suffix is stripped).
    tensors : dict
        Nested dicts / lists / tuples of tensors and scalars, e.g.
        ``{"G": G.state_dict(), "opt_G": opt_G.state_dict()}``. Int dict keys,
        tuples, None and bools survive the round trip.
    meta : dict
        JSON-able scalars and small structures (epoch, step, config); may
        hold tensors too.

    Returns
    -------
    (weights_path, json_path) : tuple of pathlib.Path

    Raises
    ------
    TypeError
        If a value cannot be stored (not a tensor, number, string, None, list,
        tuple or dict).
    OutputError
        If the files cannot be written.

    Notes
    -----
    No pickle: tensors are stored with safetensors under their dotted key path,
    everything else as JSON. Tensors are copied to CPU first (memory: one
    copy of all tensors). Loading restores dtypes and values exactly.
    """
    json_path, weights_path = model_paths(path)
    if not isinstance(tensors, Mapping) or not isinstance(meta, Mapping):
        raise TypeError("save_training_state: tensors and meta must be dicts")
    store: dict[str, torch.Tensor] = {}
    tree = _encode(tensors, "", store)
    meta_tree = _encode(meta, "__meta__", store)
    digest = _write_safetensors(weights_path, store, {"format": TRAIN_STATE_FORMAT})
    side = {"format": TRAIN_STATE_FORMAT, "tensors_sha256": digest, "tree": tree, "meta": meta_tree}
    _write_json(json_path, side)
    return weights_path, json_path


def load_training_state(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_training_state`.

    Parameters
    ----------
    path : str or os.PathLike
        ``NAME.json``, ``NAME.safetensors`` or the stem.

    Returns
    -------
    (tensors, meta) : tuple of dict
        The structures given to :func:`save_training_state`, tensors on CPU.

    Raises
    ------
    ModelError
        Missing files, bad JSON, SHA-256 mismatch or corrupt tensors.
    """
    json_path, weights_path = model_paths(path)
    for p, what in ((json_path, "training state"), (weights_path, "training state tensors")):
        if not p.is_file():
            raise ModelError(f"{what} {p}: file not found; pass the stem of an existing checkpoint")
    side = _read_json(json_path, "training state")
    where = f"training state {json_path}"
    if side.get("format") != TRAIN_STATE_FORMAT or not {"tensors_sha256", "tree", "meta"} <= set(
        side
    ):
        raise ModelError(
            f"{where}: not a {TRAIN_STATE_FORMAT} file; "
            f"pass a checkpoint written by save_training_state"
        )
    digest = sha256_file(weights_path)
    if digest != side["tensors_sha256"]:
        _read_safetensors(weights_path, "training state tensors")
        raise ModelError(
            f"training state tensors {weights_path}: SHA-256 does not match {json_path.name}; "
            f"the files were changed or do not belong together"
        )
    store = _read_safetensors(weights_path, "training state tensors")
    tensors = _decode(side["tree"], store, where)
    meta = _decode(side["meta"], store, where)
    if not isinstance(tensors, dict) or not isinstance(meta, dict):
        raise ModelError(f"{where}: top level is not a dict; the file is corrupt")
    return tensors, meta
