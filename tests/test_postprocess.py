"""The card's output filter against tile-locked lattices (geogan.models.postprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geogan.errors import ModelError
from geogan.models.checkpoint import load_generator
from geogan.models.postprocess import check_postprocess, remove_tile_lattice
from geogan.realism import periodic_amplitude

from conftest import make_tiny_model


def _mean_cell_rms(x: torch.Tensor, p: int) -> float:
    b, c, h, w = x.shape
    cell = x.reshape(b, c, h // p, p, w // p, p).mean(dim=(2, 4))
    return float((cell - cell.mean(dim=(2, 3), keepdim=True)).pow(2).mean().sqrt())


def test_a_lattice_is_removed_and_other_content_kept():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 3, 256, 256, generator=g).cumsum(-1).cumsum(-2) / 256  # smooth, non-periodic
    dots = torch.zeros(1, 1, 4, 4)
    dots[..., 1, 2] = 0.2
    lattice = dots.repeat(2, 3, 64, 64)
    cleaned = remove_tile_lattice(content + lattice, 16)
    assert _mean_cell_rms(content + lattice, 4) > 0.04
    assert _mean_cell_rms(cleaned, 4) < 1e-6 and _mean_cell_rms(cleaned, 16) < 1e-6
    # what is not periodic stays: the change is the content's own (small) mean cell
    change = (cleaned - (content + lattice - lattice)).pow(2).mean().sqrt()
    assert float(change) < 0.1 * float(content.std())


def test_heights_and_odd_sizes_are_left_alone():
    x = torch.randn(1, 4, 256, 256)
    y = remove_tile_lattice(x, 16)
    assert torch.equal(y[:, 3], x[:, 3]) and not torch.equal(y[:, :3], x[:, :3])
    odd = torch.randn(1, 3, 250, 250)
    assert torch.equal(remove_tile_lattice(odd, 16), odd)


@pytest.mark.parametrize("spec", [{"lattice_period_px": 1}, {"lattice_period_px": 16.0}, {"other": 1}, [16]])
def test_bad_postprocess_in_a_card_is_one_line(spec):
    with pytest.raises(ModelError) as err:
        check_postprocess(spec, "model card x.json")
    assert "\n" not in str(err.value) and "x.json" in str(err.value)


def test_a_card_asking_for_it_gets_images_without_a_lattice(tmp_path):
    plain_path = make_tiny_model(tmp_path / "plain")
    card = json.loads(plain_path.read_text())
    card.update(name="filtered", postprocess={"lattice_period_px": 16})
    (tmp_path / "filtered.json").write_text(json.dumps(card))  # same weights: the card says how to filter
    (tmp_path / "filtered.safetensors").write_bytes(plain_path.with_suffix(".safetensors").read_bytes())
    plain, _ = load_generator(plain_path)
    filtered, _ = load_generator(tmp_path / "filtered.json")
    x = torch.nn.functional.one_hot(torch.randint(0, 5, (1, 256, 256)), 5).permute(0, 3, 1, 2).float()
    z = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        a, b = plain(x, noise=z), filtered(x, noise=z)
    assert _mean_cell_rms(b, 16) < 1e-5 < _mean_cell_rms(a, 16)
    img = ((b + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    assert periodic_amplitude(img, (4, 8))["4"]["rms"] < 1e-3


def test_a_refiner_named_by_the_card_is_checked_and_applied(tmp_path):
    """A refiner trained a few steps on tiny pairs: the card names it (file + SHA-256); a changed file is refused."""
    import hashlib

    from data_factory import make_pairs
    from geogan.models.postprocess import Refiner
    from geogan.training.refiner import RefinerConfig, train_refiner

    plain = make_tiny_model(tmp_path / "tiny")
    pairs = make_pairs(tmp_path / "pairs", n=12, size=64)
    log = train_refiner(str(plain), pairs, tmp_path / "tiny.refiner.safetensors",
                        config=RefinerConfig(crop_px=32, batch=4, steps=100, width=8, critic_width=8))
    assert log["history"] and log["history"][-1]["step"] == 100
    card = json.loads(plain.read_text())
    sha = hashlib.sha256((tmp_path / "tiny.refiner.safetensors").read_bytes()).hexdigest()
    card.update(name="refined", postprocess={"refiner": {"file": "tiny.refiner.safetensors", "sha256": sha}})
    (tmp_path / "refined.json").write_text(json.dumps(card))
    (tmp_path / "refined.safetensors").write_bytes(plain.with_suffix(".safetensors").read_bytes())
    base, _ = load_generator(plain)
    refined, _ = load_generator(tmp_path / "refined.json")
    assert set(refined.state_dict()) == set(base.state_dict())  # the refiner stays out of the generator's weights
    x = torch.nn.functional.one_hot(torch.randint(0, 5, (1, 64, 64)), 5).permute(0, 3, 1, 2).float()
    z = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        a, b = base(x, noise=z), refined(x, noise=z)
    assert not torch.equal(a.clamp(-1, 1), b) and float((a.clamp(-1, 1) - b).abs().mean()) < 0.5
    assert isinstance(Refiner(5, 8), torch.nn.Module)
    (tmp_path / "tiny.refiner.safetensors").write_bytes(b"changed")
    with pytest.raises(ModelError, match="SHA-256"):
        load_generator(tmp_path / "refined.json")
