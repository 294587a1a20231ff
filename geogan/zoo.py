"""Finding models by name or path: the built-in zoo and the user's model directory.

A model is a pair ``NAME.safetensors`` + ``NAME.json`` (its card). Names are
looked up in the user directory (``$GEOGAN_MODEL_DIR``, default
``~/.local/share/geogan/models``) first, then in the models shipped inside the
package.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from .errors import ModelError

DEFAULT_MODEL = "default"
DEFAULT_GENERATOR = "fast"  # the default for what needs a neural generator (ONNX export, GPU benchmarks)


def builtin_model_dir() -> Path:
    return Path(str(resources.files("geogan").joinpath("data/models")))


def user_model_dir() -> Path:
    env = os.environ.get("GEOGAN_MODEL_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "geogan" / "models"


def model_dirs() -> list[Path]:
    return [user_model_dir(), builtin_model_dir()]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Path of a model card (.json) from a zoo name or a file path (a .safetensors or .onnx file: the card
    beside it, as ``geogan export-onnx`` writes it)."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    # a bare name is a zoo model even when the current folder holds a folder of that name (an --out default)
    looks_like_path = os.sep in text or p.suffix in (".json", ".safetensors", ".onnx") or p.is_file()
    if looks_like_path:
        card = p.with_suffix(".json") if p.suffix in (".safetensors", ".onnx", "") else p
        if not card.is_file():
            raise ModelError(f"model file '{card}' does not exist; give a model .json/.safetensors/.onnx path "
                             "or a name from 'geogan models'")
        return card
    for d in model_dirs():
        card = d / f"{text}.json"
        if card.is_file():
            return card
    known = ", ".join(sorted(m["name"] for m in list_models())) or "(none installed)"
    raise ModelError(f"unknown model '{text}'; known models: {known}")


def list_models() -> list[dict]:
    """Cards of all models found, user directory first; each gets a 'path' key."""
    seen, out = set(), []
    for d in model_dirs():
        if not d.is_dir():
            continue
        for card_path in sorted(d.glob("*.json")):
            if card_path.stem in seen:
                continue
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(card, dict) or not model_files_exist(card_path, card):
                continue
            card["path"] = str(card_path)
            card.setdefault("name", card_path.stem)
            seen.add(card_path.stem)
            out.append(card)
    return out


def model_files_exist(card_path: Path, card: dict) -> bool:
    """Whether the model a card describes is installed beside it: the weights (``NAME.safetensors``), or for a
    texture bank (``"arch": "quilt"``) its ``bank`` file."""
    if card.get("arch") == "quilt":
        return (card_path.parent / str(card.get("bank", card_path.with_suffix(".npz").name))).is_file()
    return card_path.with_suffix(".safetensors").exists()


def pyramid_families(card: dict) -> list[str]:
    """The model families a card is a pyramid member of (its ``pyramid_of``: one name or a list)."""
    value = card.get("pyramid_of")
    return [] if value is None else [value] if isinstance(value, str) else [str(v) for v in value]


GSD_TOLERANCE = 0.01  # relative: a native GSD 1 % coarser than asked still serves (map-scale rounding, e.g. --res in UTM)


def serves_gsd(card: dict, gsd_m: float) -> bool:
    """Whether a model ``card`` may draw an output of ``gsd_m`` m: its native GSD does not exceed it (a model
    never draws coarser than asked) and it lies in the card's ``gsd_range_m`` (``[low, high]``, high ``None``
    for no bound) when the card has one."""
    native = float(card.get("gsd_m", 0.5))
    if native > gsd_m * (1 + GSD_TOLERANCE):
        return False
    low, high = (card.get("gsd_range_m") or [None, None])[:2]
    return (low is None or gsd_m >= float(low) * (1 - GSD_TOLERANCE)) and \
        (high is None or gsd_m < float(high) * (1 - GSD_TOLERANCE))


def choose_for_gsd(cards: list[dict], gsd_m: float) -> dict:
    """Of a family's ``cards`` (the family's own model first), the one to draw an output of ``gsd_m`` m with:
    the coarsest native GSD that serves it (:func:`serves_gsd`), so the generator's pixels follow the output's;
    the family's own model when none does (a GSD finer than every member). Pure."""
    fitting = [c for c in cards if serves_gsd(c, gsd_m)]
    return max(fitting, key=lambda c: float(c.get("gsd_m", 0.5))) if fitting else cards[0]


def pyramid_cards(family: str) -> list[dict]:
    """The cards of the zoo model ``family`` and of its pyramid members (installed models whose card says
    ``"pyramid_of": family``), the family's own first, each with its file ``"stem"`` (the name to load it by);
    [] for a model given by path or a name without members."""
    text = str(family)
    if os.sep in text or Path(text).suffix in (".json", ".safetensors"):
        return []
    cards = [{**c, "stem": Path(c["path"]).stem} for c in list_models()]
    own = [c for c in cards if c["stem"] == text]
    members = [c for c in cards if text in pyramid_families(c) and c["stem"] != text]
    return own + members if own and members else []


def pick_for_gsd(family: str, gsd_m: float) -> str:
    """The zoo model to render ``gsd_m`` m pixels with when the user named ``family``: ``family`` itself or one
    of its pyramid members (:func:`pyramid_cards`), by :func:`choose_for_gsd`. A model given by path, or a name
    without members, is returned unchanged."""
    cards = pyramid_cards(family)
    return str(choose_for_gsd(cards, float(gsd_m))["stem"]) if cards else str(family)
