"""Shared fixtures: tiny random models and small synthetic OSM data made by the tests themselves."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from geogan.classes import load_schema

os.environ.setdefault("GEOGAN_MODEL_DIR", str(Path(__file__).parent / "_no_user_models"))
torch.set_num_threads(2)

LANDCOVER_MAP = {
    "background": "background", "building": "building", "road": "road", "path": "road", "railway": "road",
    "water": "water", "woodland": "woodland", "grass": "background", "farmland": "background",
    "impervious": "road", "bare": "background", "wetland": "water",
}


def make_tiny_model(path_stem: Path, arch: str = "unet", gsd_m: float = 0.5, seed: int = 0,
                    arch_params: dict | None = None, height_scale_m: float | None = None) -> Path:
    """A randomly initialised small generator with a valid card; returns the card path.

    ``height_scale_m``: give the model a fourth output, a height band of that many metres per unit.
    """
    from geogan.models.checkpoint import save_generator
    from geogan.models.registry import build_generator

    torch.manual_seed(seed)
    if arch == "spade":
        params = {"label_nc": 5, "out_nc": 3, "ngf": 8, "n_up": 5, "noise": True}
    else:
        params = {"in_nc": 5, "out_nc": 3 if height_scale_m is None else 4, "ngf": 8, "n_down": 5, "dropout": False,
                  "noise": True}
    params.update(arch_params or {})
    module = build_generator(arch, params)
    from geogan.models.normalization import NoiseInjection
    with torch.no_grad():  # an untrained net is nearly flat grey: give it contrast and make the noise count
        for m in module.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.5)
        for p in module.parameters():
            p.mul_(3.0)
    card = {
        "name": path_stem.name, "arch": arch, "arch_params": params,
        "classes": ["background", "building", "woodland", "water", "road"],
        "schema_to_model": LANDCOVER_MAP, "outputs": ["rgb"], "gsd_m": gsd_m,
        "training": {"data": "none (random weights, for tests)"}, "license": "MIT", "metrics": {},
    }
    if height_scale_m is not None:
        card.update(outputs=["rgb", "height"], height_scale_m=height_scale_m, height_reference="tile mean")
    _, card_path = save_generator(module, card, path_stem)
    return card_path


def make_tiny_style_model(path_stem: Path, arch: str = "unet") -> Path:
    """A tiny SPADE or U-Net with a style encoder; returns the card path. Untrained, its latent barely
    matters (the U-Net's style FiLM even starts as the identity), so the encoder's output layer and the
    latent's way in are scaled up: for checking the wiring (reference -> latent -> every tile), not a
    learned style."""
    from geogan.models.checkpoint import load_generator, save_generator

    path = make_tiny_model(path_stem, arch=arch, arch_params={"z_dim": 8, "use_style_encoder": True})
    module, card = load_generator(path)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.style_encoder.fc_mu.parameters():
            p.mul_(30.0)
        if arch == "spade":
            for p in module.fc.parameters():
                p.mul_(3.0)
        else:
            for name, p in module.named_parameters():
                if "style_film" in name:
                    p.normal_(0.0, 0.3)
    save_generator(module, card, path.with_suffix(""))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def schema():
    return load_schema()


@pytest.fixture
def one_torch_thread():
    """Tiny models run faster on one thread than two (much faster on a busy machine); restores the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    """Ctrl-C as a terminal gives it. A non-interactive shell starts background commands with SIGINT ignored, and
    an ignored signal stays ignored in every process started from there: the tests that stop a real geogan with
    SIGINT would then wait for nothing. A Python handler here makes child processes start with the default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
