"""Tests for geogan.models: shapes, parameter counts, gradients, losses and model files.

Networks are kept tiny (ngf 8, tiles 64-256 px) so the file runs in well
under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geogan.errors import ModelError
from geogan.models import (
    GENERATOR_ARCHS,
    SCHEMA_V1_CLASSES,
    DCGANDiscriminator,
    DCGANGenerator,
    GANLoss,
    MultiScaleDiscriminator,
    NoiseInjection,
    PatchGANDiscriminator,
    ShadowGenerator,
    SPADE,
    SPADEGenerator,
    StyleEncoder,
    UNetGenerator,
    VGG19Features,
    VGGPerceptualLoss,
    build_discriminator,
    build_generator,
    feature_matching_loss,
    kld_loss,
    load_generator,
    load_training_state,
    maybe_vgg_loss,
    random_flip_rotate,
    receptive_field,
    resize_noise,
    save_generator,
    save_training_state,
    split_texture_height,
)

N_CLASSES = len(SCHEMA_V1_CLASSES)

# ----------------------------------------------------------------- helpers


def one_hot_labels(batch: int, size: int, n_classes: int = N_CLASSES, seed: int = 0):
    """Blocky random class map as float one-hot [B, C, H, W]."""
    gen = torch.Generator().manual_seed(seed)
    cells = max(size // 8, 1)
    coarse = torch.randint(0, n_classes, (batch, cells, cells), generator=gen)
    ids = coarse.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)[:, :size, :size]
    return torch.nn.functional.one_hot(ids, n_classes).permute(0, 3, 1, 2).float()


def noise_map(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, size, size, generator=gen)


def random_projection(out: torch.Tensor, seed: int = 2) -> torch.Tensor:
    """Scalar loss with a non-degenerate gradient everywhere (a plain mean is
    invariant to some directions after batch norm)."""
    gen = torch.Generator().manual_seed(seed)
    return (out * torch.randn(out.shape, generator=gen)).sum()


def assert_every_param_has_grad(module: torch.nn.Module) -> None:
    names = []
    for name, param in module.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        if not torch.any(param.grad != 0):
            names.append(name)
    assert not names, f"all-zero gradients: {names}"


def tiny_unet(**kw) -> UNetGenerator:
    params = dict(in_nc=N_CLASSES, ngf=8, n_down=6, noise=True)
    params.update(kw)
    return UNetGenerator(**params)


def tiny_spade(**kw) -> SPADEGenerator:
    params = dict(label_nc=N_CLASSES, ngf=8, n_up=5, hidden_nc=16)
    params.update(kw)
    return SPADEGenerator(**params)


def make_card(arch: str, params: dict, outputs=("rgb",)) -> dict:
    classes = list(SCHEMA_V1_CLASSES)
    card = {
        "name": "tiny-test",
        "arch": arch,
        "arch_params": params,
        "classes": classes,
        "schema_to_model": {name: name for name in classes},
        "outputs": list(outputs),
        "gsd_m": 0.5,
        "license": "CC0-1.0",
        "training": {"epochs": 0},
        "metrics": {},
    }
    if "height" in outputs:
        card["height_scale_m"] = 50.0
    return card


def assert_one_line(exc_info) -> None:
    message = str(exc_info.value)
    assert message and "\n" not in message


# --------------------------------------------------------------- pix2pix U-Net


def pix2pix_param_count(in_nc: int, out_nc: int) -> int:
    """Parameters of the paper's U-Net, counted from its layer list.

    Encoder C64-C128-C256-C512-C512-C512-C512-C512, 4x4 convs; BatchNorm
    (gamma + beta) on every level but the first and the 1x1 innermost one,
    which carry a conv bias instead. The decoder mirrors it: transposed 4x4
    convs + BatchNorm, each level after the first also taking the matching
    encoder output (skip), and a last transposed conv (+ bias) to out_nc.
    """
    enc = [64, 128, 256, 512, 512, 512, 512, 512]
    k = 4 * 4
    total = in_nc * enc[0] * k + enc[0]
    for c_in, c_out in zip(enc[:-2], enc[1:-1]):
        total += c_in * c_out * k + 2 * c_out
    total += enc[-2] * enc[-1] * k + enc[-1]
    c_in = enc[-1]
    for c_out in enc[-2::-1]:
        total += c_in * c_out * k + 2 * c_out
        c_in = 2 * c_out
    total += c_in * out_nc * k + out_nc
    return total


@pytest.fixture(scope="module")
def pix2pix():
    return UNetGenerator(in_nc=3, out_nc=3, ngf=64, n_down=8).eval()


def test_pix2pix_parameter_count(pix2pix):
    n_params = sum(p.numel() for p in pix2pix.parameters())
    assert n_params == pix2pix_param_count(3, 3)
    assert 54.3e6 < n_params < 54.5e6
    assert pix2pix.size_multiple == 256


def test_pix2pix_forward_256(pix2pix):
    with torch.no_grad():
        out = pix2pix(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert out.shape == (1, 3, 256, 256)
    assert out.abs().max() <= 1


def test_pix2pix_layout():
    net = UNetGenerator(in_nc=3, ngf=64, n_down=8)
    # no norm on the first or innermost encoder level; dropout on 3 decoder blocks
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.down[0].modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.down[-1].modules())
    for block in net.down[1:-1]:
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in block.modules())
    assert [blk.dropout is not None for blk in net.up] == [True] * 3 + [False] * 4
    assert isinstance(net.out[-1], torch.nn.Tanh)


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("out_nc", [3, 4])
def test_compact_unet_shapes(size, out_nc):
    net = tiny_unet(out_nc=out_nc).eval()
    with torch.no_grad():
        out = net(one_hot_labels(2, size), noise_map(2, size))
        out_no_noise = net(one_hot_labels(2, size))
    assert out.shape == (2, out_nc, size, size)
    assert out_no_noise.shape == out.shape
    assert out.abs().max() <= 1


def test_unet_instance_norm_and_checks():
    net = tiny_unet(norm="instance", noise=False).eval()
    with torch.no_grad():
        assert net(one_hot_labels(1, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError):
        net(one_hot_labels(1, 96))  # not a multiple of 64
    with pytest.raises(ValueError):
        net(one_hot_labels(1, 64, n_classes=5))
    with pytest.raises(ValueError):
        net(one_hot_labels(1, 64), noise_map(1, 32))
    for bad in (dict(n_down=1), dict(norm="group"), dict(ngf=0), dict(noise="yes")):
        with pytest.raises(ValueError):
            tiny_unet(**bad)


def _uniform_output(net, size: int = 256):
    """The eval-mode net on a one-class tile with no noise (after a few training-mode calls for the norms)."""
    with torch.no_grad():
        net.train()
        for seed in range(3):
            net(one_hot_labels(2, size, seed=seed), noise_map(2, size, seed=seed))
        net.eval()
        labels = torch.zeros(1, N_CLASSES, size, size)
        labels[:, 2] = 1
        return net(labels, torch.zeros(1, 1, size, size))


def test_reflect_resize_unet_has_no_position_cue():
    """Reflect padding + resize-convolutions: a uniform input gives an exactly uniform output, so the net cannot
    paint anything at a fixed place of every tile. With the paper's transposed convolutions the tile edges
    and a 2-pixel pattern show; with the inner 4 decoder steps resized, only an 8-pixel period is left inside
    (the outer transposed convolutions), nothing at the scale of the tile."""
    torch.manual_seed(0)
    out = _uniform_output(tiny_unet(n_down=6, padding_mode="reflect", upsample="resize"))
    assert out.std(dim=(2, 3)).max() < 1e-6
    torch.manual_seed(0)
    paper = _uniform_output(tiny_unet(n_down=6))
    assert paper.std(dim=(2, 3)).max() > 1e-3
    torch.manual_seed(0)
    inner = _uniform_output(tiny_unet(n_down=6, padding_mode="reflect", upsample="resize", resize_levels=4))
    core = inner[..., 32:-32, 32:-32]
    assert core.std(dim=(2, 3)).max() > 1e-4  # the outer transposed convolutions' fine pattern
    assert torch.allclose(core[..., 8:, :], core[..., :-8, :], atol=1e-5)  # 8-pixel periodic inside
    assert torch.allclose(core[..., :, 8:], core[..., :, :-8], atol=1e-5)


def test_reflect_resize_unet_folds_and_round_trips(tmp_path):
    from geogan.infer import prepare_for_inference
    params = {"in_nc": N_CLASSES, "ngf": 8, "n_down": 6, "noise": True, "padding_mode": "reflect",
              "upsample": "resize", "resize_levels": 3}
    net = build_generator("unet", params)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules()) == 3  # 6 steps, inner 3 resize
    _uniform_output(net, 64)
    labels, noise = one_hot_labels(2, 64, seed=5), noise_map(2, 64, seed=6)
    with torch.no_grad():
        expected = net(labels, noise)
    save_generator(net, make_card("unet", params), tmp_path / "eq")
    loaded, card = load_generator(tmp_path / "eq.json")
    assert card["arch_params"]["padding_mode"] == "reflect"
    folded = prepare_for_inference(loaded, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert (folded(labels, noise) - expected).abs().max() < 1e-4
    for bad in (dict(padding_mode="circular"), dict(upsample="pixelshuffle"), dict(resize_levels=-1)):
        with pytest.raises(ValueError):
            tiny_unet(**bad)


def test_unet_gradients_reach_every_parameter():
    net = tiny_unet(dropout=True, noise=True).train()
    out = net(one_hot_labels(2, 64), noise_map(2, 64))
    random_projection(out).backward()
    assert_every_param_has_grad(net)


def test_unet_style_starts_as_identity_then_sets_the_look():
    """A U-Net with a style encoder, warm-started from a plain U-Net's weights, computes exactly what the plain
    one does whatever the style (FiLM starts at the identity); once the FiLM layers are trained, two styles give
    two outputs, and a reference image is encoded to a latent. Gradients reach the encoder and every FiLM."""
    torch.manual_seed(0)
    plain = tiny_unet(dropout=False).eval()
    styled = tiny_unet(dropout=False, z_dim=4, use_style_encoder=True).eval()
    missing = styled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("style_encoder.") or ".style_film." in k for k in missing)
    labels, noise = one_hot_labels(1, 64), noise_map(1, 64)
    with torch.no_grad():
        reference = plain(labels, noise)
        for z in torch.randn(2, 4):
            assert torch.allclose(styled(labels, noise, style=z[None]), reference, atol=1e-6)
        for name, p in styled.named_parameters():
            if "style_film" in name:
                p.normal_(0, 0.3)
        a, b = (styled(labels, noise, style=z[None]) for z in torch.randn(2, 4))
        from_image = styled(labels, noise, style=torch.rand(1, 3, 64, 64) * 2 - 1)
    assert (a - b).abs().mean() > 1e-3
    assert from_image.shape == a.shape
    styled.train()
    z, mu, logvar = styled.encode_style(torch.rand(2, 3, 64, 64) * 2 - 1)
    random_projection(styled(one_hot_labels(2, 64), noise_map(2, 64), style=z)).backward()
    assert_every_param_has_grad(styled)
    with pytest.raises(ValueError, match="z_dim"):
        tiny_unet(use_style_encoder=True)
    with pytest.raises(ValueError, match="style encoder"):
        tiny_unet(z_dim=4)(labels, noise, style=torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="z_dim is 0"):
        plain(labels, noise, style=torch.zeros(1, 4))


def test_noise_map_changes_output_deterministically():
    net = tiny_unet().eval()
    for module in net.modules():
        if isinstance(module, NoiseInjection):
            torch.nn.init.constant_(module.weight, 0.5)
    labels = one_hot_labels(1, 64)
    with torch.no_grad():
        a = net(labels, noise_map(1, 64, seed=3))
        b = net(labels, noise_map(1, 64, seed=3))
        c = net(labels, noise_map(1, 64, seed=4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


# ------------------------------------------------------------ normalization


def test_noise_injection_starts_as_identity_and_resizes():
    layer = NoiseInjection(4)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(layer(x, noise_map(2, 64)), x)
    assert torch.equal(layer(x), x)  # random noise, zero scale
    big = torch.randn(4, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    small = resize_noise(big, (16, 16))
    assert small.shape == (4, 1, 16, 16)
    assert abs(small.std().item() - 1.0) < 0.1  # unit variance kept
    with pytest.raises(ValueError):
        NoiseInjection(0)


def test_spade_layer():
    layer = SPADE(norm_nc=8, label_nc=N_CLASSES, hidden_nc=16)
    x = torch.randn(2, 8, 16, 16)
    out = layer(x, one_hot_labels(2, 64))
    assert out.shape == x.shape
    random_projection(out).backward()
    assert_every_param_has_grad(layer)
    with pytest.raises(ValueError):
        SPADE(8, N_CLASSES, kernel=4)
    with pytest.raises(ValueError):
        SPADE(8, N_CLASSES, param_free_norm="layer")


# --------------------------------------------------------------------- SPADE


@pytest.mark.parametrize("size", [64, 128, 256])
def test_spade_shapes(size):
    net = tiny_spade(out_nc=4).eval()
    with torch.no_grad():
        out = net(one_hot_labels(1, size), noise_map(1, size))
    assert out.shape == (1, 4, size, size)
    assert out.abs().max() <= 1
    assert net.size_multiple == 32


def test_spade_style_inputs():
    net = tiny_spade(z_dim=8, use_style_encoder=True).eval()
    labels, noise = one_hot_labels(2, 64), noise_map(2, 64)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        by_image = net(labels, noise, style=image)
        z, mu, logvar = net.encode_style(image)
        by_latent = net(labels, noise, style=z)
        default = net(labels, noise)
        zero = net(labels, noise, style=torch.zeros(1, 8))
    assert by_image.shape == (2, 3, 64, 64)
    assert torch.allclose(by_image, by_latent)
    assert torch.equal(z, mu)  # eval mode uses the mean
    assert torch.equal(default, zero)  # eval mode without style uses the prior mean
    with pytest.raises(ValueError):
        net(labels, noise, style=torch.zeros(2, 5))
    with pytest.raises(ValueError):
        tiny_spade()(labels, noise, style=torch.zeros(2, 8))  # z_dim 0
    with pytest.raises(ValueError):
        tiny_spade(use_style_encoder=True)  # needs z_dim


def test_spade_style_film_starts_as_identity_then_carries_the_style_everywhere():
    """style_film feeds z to every SPADE layer. Zero-initialised, the network computes exactly what the same
    weights without FiLM compute (a warm start from a FiLM-less run keeps its function); once trained, the
    style changes the output even where the start-of-network path is cut."""
    torch.manual_seed(0)
    plain = tiny_spade(z_dim=4, use_style_encoder=True).eval()
    film = tiny_spade(z_dim=4, use_style_encoder=True, style_film=True).eval()
    missing = film.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all("style_film" in k for k in missing)
    labels, noise = one_hot_labels(1, 64), noise_map(1, 64)
    styles = torch.randn(2, 4)
    with torch.no_grad():
        for z in styles:
            assert torch.allclose(film(labels, noise, style=z[None]), plain(labels, noise, style=z[None]), atol=1e-6)
        for name, p in film.named_parameters():
            if "style_film" in name:
                p.normal_(0, 0.3)
        film.fc.weight[:, -4:] = 0  # cut z's path through the first convolution
        a, b = (film(labels, noise, style=z[None]) for z in styles)
    assert (a - b).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="style_film"):
        tiny_spade(style_film=True)  # needs z_dim


def test_spade_gradients_reach_every_parameter():
    net = tiny_spade(z_dim=4, use_style_encoder=True, noise=True, style_film=True).train()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    z, mu, logvar = net.encode_style(image)
    out = net(one_hot_labels(2, 64), noise_map(2, 64), style=z)
    (random_projection(out) + kld_loss(mu, logvar)).backward()
    assert_every_param_has_grad(net)


def test_style_encoder_any_size():
    enc = StyleEncoder(3, z_dim=6, nef=8, n_layers=3)
    mu, logvar = enc(torch.randn(2, 3, 48, 80))
    assert mu.shape == logvar.shape == (2, 6)


# ------------------------------------------------------------ discriminators


def test_patchgan_is_70px_and_shapes():
    assert receptive_field(3) == 70
    disc = PatchGANDiscriminator(N_CLASSES + 3, ndf=8, n_layers=3)
    labels, image = one_hot_labels(2, 256), torch.rand(2, 3, 256, 256)
    assert disc(labels, image).shape == (2, 1, 30, 30)
    feats = disc.features(torch.cat([labels, image], 1))
    assert len(feats) == 5 and feats[-1].shape == (2, 1, 30, 30)


@pytest.mark.parametrize("norm", ["batch", "instance", "spectral", "none"])
def test_discriminator_gradients(norm):
    disc = MultiScaleDiscriminator(N_CLASSES + 4, ndf=8, n_layers=3, num_d=2, norm=norm).train()
    out = disc(one_hot_labels(2, 64), torch.rand(2, 4, 64, 64))
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)
    assert out[1][0].shape[-1] == out[0][0].shape[-1] // 2
    random_projection(torch.cat([s[-1].flatten() for s in out])).backward()
    assert_every_param_has_grad(disc)


def test_multiscale_three_scales():
    disc = MultiScaleDiscriminator(N_CLASSES + 3, ndf=8, num_d=3)
    out = disc(one_hot_labels(1, 128), torch.rand(1, 3, 128, 128))
    assert [s[-1].shape[-1] for s in out] == [14, 6, 2]


# --------------------------------------------------------------------- losses


def test_gan_loss_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown mode"):
        GANLoss("wgan")


def test_hinge_loss_values():
    loss = GANLoss("hinge")
    pred = torch.tensor([-2.0, 0.0, 0.5, 3.0])
    assert loss(pred, True).item() == pytest.approx((3 + 1 + 0.5 + 0) / 4)
    assert loss(pred, False).item() == pytest.approx((0 + 1 + 1.5 + 4) / 4)
    assert loss(pred, True, for_discriminator=False).item() == pytest.approx(-0.375)
    with pytest.raises(ValueError):
        loss(pred, False, for_discriminator=False)
    # multi-scale structure: mean over scales of each scale's last feature
    multi = [[torch.zeros(3), pred], [torch.zeros(3), torch.full((4,), 2.0)]]
    assert loss(multi, True).item() == pytest.approx((1.125 + 0.0) / 2)


def test_vanilla_and_lsgan_values():
    zeros = torch.zeros(2, 1, 4, 4)
    assert GANLoss("vanilla")(zeros, True).item() == pytest.approx(math.log(2))
    assert GANLoss("lsgan")(zeros, True).item() == pytest.approx(1.0)
    assert GANLoss("lsgan")(zeros, False).item() == pytest.approx(0.0)


def test_feature_matching():
    feats = [[torch.randn(1, 4, 8, 8), torch.randn(1, 1, 6, 6)] for _ in range(2)]
    assert feature_matching_loss(feats, feats).item() == 0.0
    fake = [[f[0] + 1.0, f[1] + 5.0] for f in feats]  # logits are ignored
    assert feature_matching_loss(feats, fake).item() == pytest.approx(1.0)
    single = [torch.randn(1, 2, 4, 4), torch.randn(1, 1, 2, 2)]
    assert feature_matching_loss(single, single).item() == 0.0


def test_kld_zero_for_prior():
    assert kld_loss(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0


def test_lattice_share_finds_a_periodic_pattern_and_the_loss_pushes_it_down():
    from geogan.models.loss import lattice_loss, lattice_share
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 3, 128, 128, generator=g)
    dots = torch.zeros(1, 1, 32, 32)
    dots[..., 10:13, 20:23] = 1.0
    lattice = noise * 0.2 + dots.repeat(2, 3, 4, 4)  # a dot every 32 px on noise
    share_noise, share_lattice = lattice_share(noise), lattice_share(lattice)
    assert share_noise.max() < 0.09  # white noise: 1/16 of a 128 px image's frequencies lie on the 32 px lattice
    assert share_lattice.min() > 0.3
    assert lattice_loss(noise, lattice).item() == 0.0  # no excess over the real image
    fake = lattice.clone().requires_grad_(True)
    loss = lattice_loss(fake, noise)
    assert loss.item() > 0.25
    loss.backward()
    stepped = (fake - 50.0 * fake.grad).detach()
    assert lattice_share(stepped).mean() < share_lattice.mean()  # its gradient removes lattice power
    with pytest.raises(ValueError, match="multiple"):
        lattice_share(torch.zeros(1, 3, 100, 100))


def test_diversity_loss_rewards_different_samples_up_to_its_cap():
    from geogan.models.loss import diversity_loss
    a = torch.zeros(2, 3, 16, 16)
    assert diversity_loss(a, a).item() == 0.0
    assert diversity_loss(a, a + 0.04, cap=0.1).item() == pytest.approx(-0.04)
    assert diversity_loss(a, a + 0.5, cap=0.1).item() == pytest.approx(-0.1)
    speckle = torch.ones(1, 1, 16, 16)
    speckle[..., ::2, :] = -1  # pixel-level differences average out over the 8 px cells
    assert diversity_loss(a, a + 0.3 * speckle).item() == pytest.approx(0.0, abs=1e-7)
    assert diversity_loss(a, a + 0.3 * speckle, pool_px=1, cap=1.0).item() == pytest.approx(-0.3)
    b = (a + 0.02).requires_grad_()
    diversity_loss(a, b).backward()
    assert (b.grad < 0).all()  # minimising it pushes the samples apart
    c = (a + 0.5).requires_grad_()
    diversity_loss(a, c, cap=0.1).backward()
    assert (c.grad == 0).all()  # past the cap: no pull away from the photo


def test_fixed_pattern_loss_measures_only_the_picture_all_samples_share():
    from geogan.models.loss import FIXED_PATTERN_POOL_PX, fixed_pattern_loss
    g = torch.Generator().manual_seed(0)
    spot = torch.zeros(1, 3, 64, 64)
    spot[..., 16:32, 24:40] = -0.8  # one dark tree at the same place of every sample
    pooled_var = torch.nn.functional.avg_pool2d(spot, FIXED_PATTERN_POOL_PX).var(dim=(-2, -1), unbiased=False).mean().item()
    shared = spot.repeat(4, 1, 1, 1)
    assert fixed_pattern_loss(shared).item() == pytest.approx(pooled_var, rel=1e-5)
    # trees the noise places: as much contrast, zero shared variance in expectation (one draw: small)
    drawn = torch.randn(64, 3, 8, 8, generator=g).repeat_interleave(8, -1).repeat_interleave(8, -2) * 0.3
    assert abs(fixed_pattern_loss(drawn).item()) < 0.05 * pooled_var
    assert abs(fixed_pattern_loss(drawn).item()) < 0.01 * drawn.var().item()
    assert fixed_pattern_loss(shared + drawn[:4]).item() > 0.5 * pooled_var
    x = (shared + drawn[:4]).requires_grad_()
    fixed_pattern_loss(x).backward()
    descent = -x.grad  # fades the shared spot: lifts it, and moves the rest of the tile far less
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[16:32, 24:40] = False
    assert descent[..., 16:32, 24:40].mean() > 0
    assert descent[..., 16:32, 24:40].abs().mean() > 3 * descent[..., outside].abs().mean()
    with pytest.raises(ValueError, match="at least 2"):
        fixed_pattern_loss(shared[:1])


def test_shift_equivariance_loss_is_zero_for_pointwise_maps_and_catches_a_fixed_spot():
    from geogan.models.loss import shift_equivariance_loss
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 256, 256, generator=g)
    shift = (40, 57)
    pointwise = lambda t: torch.tanh(2 * t)  # noqa: E731  (no position: equivariant)
    assert shift_equivariance_loss(pointwise(x), pointwise(torch.roll(x, shift, (-2, -1))), shift).item() < 1e-6
    spot = torch.zeros(1, 1, 256, 256)
    spot[..., 100:110, 110:120] = 1.0  # a dark tree at a fixed place of every tile
    with_spot = lambda t: pointwise(t) - spot  # noqa: E731
    loss = shift_equivariance_loss(with_spot(x), with_spot(torch.roll(x, shift, (-2, -1))), shift)
    assert loss.item() > 0.005
    small = x[..., :64, :64]
    assert shift_equivariance_loss(small, small, (32, 32), margin_px=20).item() == 0.0  # nothing left to compare


def test_vgg_loss_warns_once_without_weights(tmp_path):
    for path in (None, tmp_path / "missing.safetensors"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert maybe_vgg_loss(path) is None
        assert len(caught) == 1


def test_vgg_loss_with_local_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {k: v.half() for k, v in VGG19Features().state_dict().items()}
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = maybe_vgg_loss(path)
    assert isinstance(loss, VGGPerceptualLoss)
    real = torch.rand(1, 4, 32, 32) * 2 - 1
    fake = (torch.rand(1, 4, 32, 32) * 2 - 1).requires_grad_(True)
    assert loss(real, real).item() == 0.0
    value = loss(fake, real)
    value.backward()
    assert value.item() > 0 and fake.grad is not None
    assert all(p.grad is None for p in loss.parameters())

    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ModelError) as info:
        VGGPerceptualLoss(bad)
    assert_one_line(info)


# -------------------------------------------------------------------- shadow


def test_shadow_generator_and_split():
    out = torch.rand(2, 4, 64, 64) * 2 - 1
    texture, height = split_texture_height(out)
    shadow = ShadowGenerator(hidden=16)
    shaded = shadow(texture, height)
    assert shaded.shape == (2, 3, 64, 64)
    random_projection(shaded).backward()
    assert_every_param_has_grad(shadow)
    with pytest.raises(ValueError):
        split_texture_height(texture)


def test_random_flip_rotate_keeps_pairs_aligned():
    texture = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    height = texture[:, :1].clone()
    labels = texture[:, 1:2].clone()
    seen = set()
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        t, h, lab = random_flip_rotate(texture, height, labels, generator=gen)
        assert t.shape == texture.shape and h.shape == height.shape
        assert torch.equal(h, t[:, :1]) and torch.equal(lab, t[:, 1:2])
        seen.add(tuple(t[0, 0].flatten()[:3].tolist()) + (t[0, 0, 0, 1].item(),))
    assert len(seen) == 8  # all symmetries of the square occur
    wide = torch.rand(1, 3, 4, 8)
    for seed in range(8):
        t, h = random_flip_rotate(wide, wide[:, :1], generator=torch.Generator().manual_seed(seed))
        assert t.shape == wide.shape


# --------------------------------------------------------------------- DCGAN


@pytest.mark.parametrize("size", [32, 64])
def test_dcgan_shapes(size):
    gen = DCGANGenerator(z_dim=16, n_classes=N_CLASSES, ngf=8, size=size)
    disc = DCGANDiscriminator(n_classes=N_CLASSES, ndf=8, size=size)
    maps = gen(torch.randn(3, 16))
    assert maps.shape == (3, N_CLASSES, size, size)
    assert torch.allclose(maps.sum(dim=1), torch.ones(3, size, size), atol=1e-5)
    assert gen.logits(torch.randn(3, 16, 1, 1)).shape == maps.shape
    logits = disc(maps)
    assert logits.shape == (3,)
    random_projection(logits).backward()
    assert_every_param_has_grad(gen)
    assert_every_param_has_grad(disc)
    with pytest.raises(ValueError):
        DCGANGenerator(size=48)


# ------------------------------------------------------------------ registry


def test_registry():
    for arch in GENERATOR_ARCHS:
        key = "label_nc" if arch == "spade" else "in_nc"
        params = {key: N_CLASSES, "ngf": 8}
        if arch == "spade":
            params["hidden_nc"] = 16
        net = build_generator(arch, params)
        assert isinstance(net.size_multiple, int) and net.size_multiple > 1
        assert net.in_channels == N_CLASSES and net.out_channels == 3
    assert build_generator("unet", {"in_nc": 3}).size_multiple == 64
    assert build_generator("pix2pix", {"in_nc": 3, "ngf": 8}).size_multiple == 256
    with pytest.raises(ModelError, match="pix2pix, unet, spade") as info:
        build_generator("cyclegan", {})
    assert_one_line(info)
    with pytest.raises(ModelError):
        build_generator("unet", {"in_nc": 3, "bogus": 1})
    with pytest.raises(ModelError):
        build_generator("unet", {"in_nc": 3, "n_down": 0})
    patch = build_discriminator("patchgan", {"in_nc": 15, "ndf": 8})
    multi = build_discriminator("multiscale", {"in_nc": 15, "ndf": 8})
    assert isinstance(patch, PatchGANDiscriminator)
    assert isinstance(multi, MultiScaleDiscriminator)
    with pytest.raises(ModelError, match="patchgan"):
        build_discriminator("stylegan", {})


# ---------------------------------------------------------------- model files


@pytest.fixture
def saved_unet(tmp_path):
    params = {"in_nc": N_CLASSES, "ngf": 8, "n_down": 6}
    net = build_generator("unet", params)
    with torch.no_grad():  # non-trivial weights and running statistics
        net.train()(one_hot_labels(2, 64), noise_map(2, 64))
        for module in net.modules():
            if isinstance(module, NoiseInjection):
                module.weight.normal_()
    net.eval()
    card = make_card("unet", params)
    weights, card_path = save_generator(net, card, tmp_path / "tiny")
    return net, card, weights, card_path


def test_save_load_round_trip(saved_unet):
    net, card, weights, card_path = saved_unet
    assert weights.name == "tiny.safetensors" and card_path.name == "tiny.json"
    assert "weights_sha256" not in card  # caller's dict untouched
    labels, noise = one_hot_labels(2, 64, seed=5), noise_map(2, 64, seed=6)
    with torch.no_grad():
        expected = net(labels, noise)
    for path in (card_path, weights, card_path.with_suffix("")):
        loaded, loaded_card = load_generator(path)
        assert not loaded.training
        assert loaded_card["format"] == "geogan-model/1"
        assert len(loaded_card["weights_sha256"]) == 64
        with torch.no_grad():
            assert torch.equal(loaded(labels, noise), expected)


def test_spade_round_trip_with_height(tmp_path):
    params = {"label_nc": N_CLASSES, "out_nc": 4, "ngf": 8, "hidden_nc": 16, "z_dim": 4,
              "use_style_encoder": True}
    net = build_generator("spade", params).eval()
    save_generator(net, make_card("spade", params, outputs=("rgb", "height")), tmp_path / "sp")
    loaded, card = load_generator(tmp_path / "sp.json")
    labels, noise = one_hot_labels(1, 64), noise_map(1, 64)
    with torch.no_grad():
        assert torch.equal(loaded(labels, noise), net(labels, noise))
    assert card["height_scale_m"] == 50.0


def test_fp16_save_loads_close(saved_unet, tmp_path):
    net, card, weights, _ = saved_unet
    w16, _ = save_generator(net, card, tmp_path / "half", fp16=True)
    assert w16.stat().st_size < 0.6 * weights.stat().st_size
    loaded, _ = load_generator(w16)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    labels, noise = one_hot_labels(1, 64), noise_map(1, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(labels, noise), net(labels, noise), atol=2e-2)


def test_missing_files(saved_unet, tmp_path):
    _, _, weights, card_path = saved_unet
    with pytest.raises(ModelError, match="not found") as info:
        load_generator(tmp_path / "nothing.json")
    assert_one_line(info)
    weights.unlink()
    with pytest.raises(ModelError, match="not found"):
        load_generator(card_path)


def test_truncated_weights(saved_unet):
    _, _, weights, card_path = saved_unet
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt or truncated") as info:
        load_generator(card_path)
    assert_one_line(info)


def test_corrupt_header(saved_unet):
    _, _, weights, card_path = saved_unet
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt") as info:
        load_generator(card_path)
    assert_one_line(info)


def test_hash_mismatch(saved_unet):
    _, _, weights, card_path = saved_unet
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # still parses, different bytes
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256") as info:
        load_generator(card_path)
    assert_one_line(info)


def rewrite_card(card_path, **changes):
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))
    return card


def test_wrong_architecture(saved_unet):
    _, card, _, card_path = saved_unet
    rewrite_card(card_path, arch_params={**card["arch_params"], "ngf": 16})
    with pytest.raises(ModelError, match="wrong architecture") as info:
        load_generator(card_path)
    assert_one_line(info)


def test_class_mismatch(saved_unet):
    _, _, _, card_path = saved_unet
    classes = list(SCHEMA_V1_CLASSES[:-1])
    mapping = {name: name for name in classes}
    mapping["wetland"] = "water"
    rewrite_card(card_path, classes=classes, schema_to_model=mapping)
    with pytest.raises(ModelError, match="class mismatch") as info:
        load_generator(card_path)
    assert_one_line(info)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"arch": "cyclegan"}, "unknown arch"),
        ({"schema_to_model": {"background": "background"}}, "does not map"),
        ({"schema_to_model": {n: "forest" for n in SCHEMA_V1_CLASSES}}, "not in classes"),
        ({"outputs": ["rgb", "height"]}, "height_scale_m"),
        ({"gsd_m": -1}, "gsd_m"),
        ({"format": "other/9"}, "format"),
        ({"outputs": ["rgb", "height"], "height_scale_m": 10.0}, "outputs"),
    ],
)
def test_invalid_cards(saved_unet, changes, match):
    _, _, _, card_path = saved_unet
    rewrite_card(card_path, **changes)
    with pytest.raises(ModelError, match=match) as info:
        load_generator(card_path)
    assert_one_line(info)


def test_card_not_json(saved_unet):
    _, _, _, card_path = saved_unet
    card_path.write_text("{not json")
    with pytest.raises(ModelError, match="JSON") as info:
        load_generator(card_path)
    assert_one_line(info)


def test_save_rejects_card_that_does_not_describe_module(tmp_path):
    net = tiny_unet()
    card = make_card("unet", {"in_nc": N_CLASSES, "ngf": 16, "n_down": 6})
    with pytest.raises(ModelError, match="wrong architecture"):
        save_generator(net, card, tmp_path / "x")
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------ training state


def assert_same_tree(a, b, where="root"):
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), where
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}.{i}")
    else:
        assert a == b or (a != a and b != b), where


def adam_step(model, opt, seed):
    opt.zero_grad()
    out = model(one_hot_labels(2, 64, seed=seed), noise_map(2, 64, seed=seed))
    random_projection(out, seed=seed).backward()
    opt.step()


def test_training_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = tiny_unet(dropout=False).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for seed in range(2):
        adam_step(model, opt, seed)
    state = {"G": model.state_dict(), "opt_G": opt.state_dict()}
    meta = {"epoch": 3, "lr": 2e-4, "betas": (0.5, 0.999), "none": None, "flag": True,
            "nested": {1: [1.5, "x"]}, "nan": float("nan")}
    save_training_state(tmp_path / "ckpt", state, meta)
    loaded, loaded_meta = load_training_state(tmp_path / "ckpt.json")
    assert_same_tree(state, loaded)
    assert_same_tree(meta, loaded_meta)

    torch.manual_seed(1)
    model2 = tiny_unet(dropout=False).train()
    opt2 = torch.optim.Adam(model2.parameters(), lr=1.0)
    model2.load_state_dict(loaded["G"])
    opt2.load_state_dict(loaded["opt_G"])
    assert_same_tree(opt.state_dict(), opt2.state_dict())
    adam_step(model, opt, 7)
    adam_step(model2, opt2, 7)
    for (name, p1), p2 in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(p1, p2), name


def test_training_state_errors(tmp_path):
    with pytest.raises(TypeError):
        save_training_state(tmp_path / "bad", {"x": object()}, {})
    weights, side = save_training_state(tmp_path / "ok", {"x": torch.ones(3)}, {"step": 1})
    weights.write_bytes(weights.read_bytes()[:-2])
    with pytest.raises(ModelError) as info:
        load_training_state(tmp_path / "ok")
    assert_one_line(info)
    with pytest.raises(ModelError, match="not found"):
        load_training_state(tmp_path / "missing")


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)
_tensors = st.builds(
    lambda shape, dtype: (torch.randn(shape) * 100).to(dtype),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
    st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool]),
)
_trees = st.recursive(
    st.one_of(_scalars, _tensors),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.integers(0, 9), st.text(max_size=3)), inner, max_size=3),
    ),
    max_leaves=8,
)


@settings(max_examples=30, deadline=None)
@given(tree=st.dictionaries(st.text(max_size=4), _trees, max_size=4))
def test_training_state_round_trip_property(tree):
    with tempfile.TemporaryDirectory() as tmp:
        save_training_state(Path(tmp) / "state", tree, {"tree": tree})
        loaded, meta = load_training_state(Path(tmp) / "state")
    assert_same_tree(tree, loaded)
    assert_same_tree({"tree": tree}, meta)


def test_a_folder_named_like_a_zoo_model_does_not_hide_it(tmp_path, monkeypatch):
    from geogan.zoo import resolve_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # e.g. the outputs of an earlier `geogan render --out default`
    assert resolve_model("default").parent.name == "models"
    (tmp_path / "mine.json").write_text("{}")
    assert resolve_model("mine.json") == Path("mine.json")
