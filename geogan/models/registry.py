"""Build generators and discriminators from an architecture name and a kwargs dict."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from ..errors import ModelError
from .dcgan import DCGANDiscriminator
from .discriminator import MultiScaleDiscriminator, PatchGANDiscriminator
from .spade import SPADEGenerator
from .unet import UNetGenerator

__all__ = [
    "GENERATOR_ARCHS",
    "DISCRIMINATOR_ARCHS",
    "generator_defaults",
    "build_generator",
    "build_discriminator",
]

# arch -> (class, defaults that differ from the class defaults)
_GENERATORS: dict[str, tuple[Callable[..., nn.Module], dict]] = {
    # The paper's network: ngf 64, 8 levels (256 px multiples), dropout, batch norm.
    "pix2pix": (UNetGenerator, {}),
    # Same class, compact: 6 levels (64 px multiples), half width, noise map
    # instead of dropout as the source of variety.
    "unet": (UNetGenerator, {"ngf": 32, "n_down": 6, "dropout": False, "noise": True}),
    "spade": (SPADEGenerator, {}),
}

_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "patchgan": PatchGANDiscriminator,
    "multiscale": MultiScaleDiscriminator,
    "dcgan": DCGANDiscriminator,
}

#: Known generator architecture names.
GENERATOR_ARCHS = tuple(_GENERATORS)
#: Known discriminator architecture names.
DISCRIMINATOR_ARCHS = tuple(_DISCRIMINATORS)


def generator_defaults(arch: str) -> dict:
    """Return the registry's default kwargs for ``arch`` (a copy).

    Raises
    ------
    ModelError
        If ``arch`` is unknown.
    """
    if arch not in _GENERATORS:
        raise ModelError(
            f"unknown generator arch {arch!r}; use one of {', '.join(GENERATOR_ARCHS)}"
        )
    return dict(_GENERATORS[arch][1])


def _build(kind: str, arch: str, factory: Callable[..., nn.Module], params) -> nn.Module:
    if not isinstance(params, Mapping):
        raise ModelError(
            f"{kind} arch {arch!r}: params must be a dict of keyword arguments, "
            f"got {type(params).__name__}"
        )
    try:
        return factory(**params)
    except (TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{kind} arch {arch!r} with params {dict(params)}: {reason}") from None


def build_generator(arch: str, params: Mapping) -> nn.Module:
    """Build a generator.

    Parameters
    ----------
    arch : {"pix2pix", "unet", "spade"}
        ``"pix2pix"`` and ``"unet"`` are both :class:`UNetGenerator`
        (``"unet"`` with compact defaults ``ngf=32, n_down=6, dropout=False,
        noise=True``); ``"spade"`` is :class:`SPADEGenerator`.
    params : dict
        Keyword arguments; they override the arch defaults. U-Nets need
        ``in_nc``, SPADE needs ``label_nc``.

    Returns
    -------
    torch.nn.Module
        With int attributes ``in_channels``, ``out_channels`` and ``size_multiple``;
        called as ``module(labels, noise=None)``.

    Raises
    ------
    ModelError
        For an unknown arch (the message lists the known ones) or params the
        constructor rejects.
    """
    defaults = generator_defaults(arch)
    factory = _GENERATORS[arch][0]
    if not isinstance(params, Mapping):
        return _build("generator", arch, factory, params)
    return _build("generator", arch, factory, {**defaults, **params})


def build_discriminator(arch: str, params: Mapping) -> nn.Module:
    """Build a discriminator.

    Parameters
    ----------
    arch : {"patchgan", "multiscale", "dcgan"}
        :class:`PatchGANDiscriminator`, :class:`MultiScaleDiscriminator` or
        :class:`DCGANDiscriminator`.
    params : dict
        Keyword arguments of that class.

    Raises
    ------
    ModelError
        For an unknown arch (the message lists the known ones) or bad params.
    """
    if arch not in _DISCRIMINATORS:
        raise ModelError(
            f"unknown discriminator arch {arch!r}; use one of {', '.join(DISCRIMINATOR_ARCHS)}"
        )
    return _build("discriminator", arch, _DISCRIMINATORS[arch], params)
