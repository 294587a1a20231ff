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


def builtin_model_dir() -> Path:
    return Path(str(resources.files("geogan").joinpath("data/models")))


def user_model_dir() -> Path:
    env = os.environ.get("GEOGAN_MODEL_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "geogan" / "models"


def model_dirs() -> list[Path]:
    return [user_model_dir(), builtin_model_dir()]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Path of a model card (.json) from a zoo name or a file path."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    looks_like_path = os.sep in text or p.suffix in (".json", ".safetensors") or p.exists()
    if looks_like_path:
        card = p.with_suffix(".json") if p.suffix in (".safetensors", "") else p
        if not card.is_file():
            raise ModelError(f"model file '{card}' does not exist; give a model .json/.safetensors path "
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
            if card_path.stem in seen or not card_path.with_suffix(".safetensors").exists():
                continue
            try:
                card = json.loads(card_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            card["path"] = str(card_path)
            card.setdefault("name", card_path.stem)
            seen.add(card_path.stem)
            out.append(card)
    return out
