"""Dream model files: the ``geogan-dream/1`` card and generator weights, saving, finding and loading them,
and sampling independent tiles from a generator."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..classes import Schema, load_schema
from ..errors import ModelError
from ..models.checkpoint import model_paths, sha256_file
from ..models.dcgan import DCGANGenerator

PathLike = str | os.PathLike
BBox = tuple[float, float, float, float]
ProgressFn = Callable[[float, str], None]

#: ``card["format"]`` of dream models.
DREAM_FORMAT = "geogan-dream/1"
#: Default name of the exported model inside the run directory.
DEFAULT_MODEL_NAME = "dream"
#: Licence of models trained on OpenStreetMap data (a derived database).
OSM_LICENSE = "ODbL-1.0"
OSM_ATTRIBUTION = "© OpenStreetMap contributors, ODbL 1.0 (https://www.openstreetmap.org/copyright)"


@dataclass
class DreamModel:
    """A loaded dream generator and its card."""

    generator: DCGANGenerator
    card: dict

    @property
    def tile_px(self) -> int:
        return int(self.card["tile_px"])

    @property
    def z_dim(self) -> int:
        return int(self.card["z_dim"])

    @property
    def gsd_m(self) -> float:
        return float(self.card["gsd_m"])

    @property
    def n_classes(self) -> int:
        return len(self.card["classes"])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_dream_model(generator: DCGANGenerator, card: dict, path_stem: PathLike) -> tuple[Path, Path]:
    """Write ``STEM.safetensors`` + ``STEM.json``; fills in format, arch params and the weights' SHA-256."""
    from safetensors.torch import save_file

    card_path, weights_path = model_paths(path_stem)
    out = dict(card)
    out.update(format=DREAM_FORMAT, arch="dcgan", tile_px=generator.size, z_dim=generator.z_dim,
               arch_params={"z_dim": generator.z_dim, "n_classes": generator.n_classes,
                            "ngf": _ngf(generator), "size": generator.size,
                            **({"blur": True} if getattr(generator, "blur", False) else {})})
    if len(out.get("classes", [])) != generator.n_classes:
        raise ModelError(f"dream model card lists {len(out.get('classes', []))} classes but the generator has "
                         f"{generator.n_classes}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in generator.state_dict().items()}
    _atomic(weights_path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": DREAM_FORMAT}))
    out["weights_sha256"] = sha256_file(weights_path)
    _atomic(card_path, lambda tmp: tmp.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8"))
    return weights_path, card_path


def _ngf(generator: DCGANGenerator) -> int:
    last = [m for m in generator.net if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    return int(last.in_channels)


def resolve_dream_model(name_or_path: PathLike) -> Path:
    """Card path of a dream model: a .json/.safetensors path or a name in geogan's model directories."""
    from ..zoo import resolve_model

    try:
        return resolve_model(name_or_path)
    except ModelError:
        raise ModelError(f"dream model '{name_or_path}' not found; train one with 'geogan dream-train' and pass "
                         "--model RUN/dream.json (or copy it into the user model directory)") from None


def load_dream_model(path: PathLike, device: str | torch.device = "cpu",
                     schema: Schema | None = None) -> DreamModel:
    """Load and check a dream model written by :func:`save_dream_model` (or a zoo name)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card_path, weights_path = model_paths(resolve_dream_model(path))
    for p in (card_path, weights_path):
        if not p.is_file():
            raise ModelError(f"dream model file '{p}' does not exist; train one with 'geogan dream-train'")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"dream model card '{card_path}' is not readable JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != DREAM_FORMAT:
        raise ModelError(f"'{card_path}' is not a {DREAM_FORMAT} model card; conditional render models go to "
                         "--render-model, dream models come from 'geogan dream-train'")
    if sha256_file(weights_path) != card.get("weights_sha256"):
        raise ModelError(f"dream model weights '{weights_path}' do not match the SHA-256 in its card; the file was "
                         "changed or belongs to another card")
    schema = schema or load_schema()
    names = [c.name for c in schema.classes]
    if list(card.get("classes", [])) != names[:len(card.get("classes", []))] or not card.get("classes"):
        raise ModelError(f"dream model '{card_path}' classes {card.get('classes')} do not match the schema's "
                         f"class ids {names}; retrain with this schema")
    try:
        gen = DCGANGenerator(**card["arch_params"])
        gen.load_state_dict(load_file(str(weights_path)), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"dream model '{card_path}': weights do not fit the card ({first})") from None
    gen.eval().to(device)
    return DreamModel(gen, card)


@torch.no_grad()
def sample_tiles(generator: DCGANGenerator, n: int, seed: int = 0, batch: int = 64) -> np.ndarray:
    """``uint8 (n, T, T)`` class maps (argmax) of ``n`` independent latents, in eval mode."""
    was_training = generator.training
    generator.eval()
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    out = []
    for i in range(0, n, batch):
        z = torch.randn(min(batch, n - i), generator.z_dim, generator=gen).to(device)
        out.append(generator.logits(z).argmax(1).to(torch.uint8).cpu().numpy())
    generator.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, generator.size, generator.size), np.uint8)
