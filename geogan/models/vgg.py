"""VGG19 convolutional feature stack in plain torch (no torchvision), weights from a local file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

__all__ = ["VGG19_CFG", "VGG19Features", "load_vgg19_state"]

#: VGG19 "E" configuration: conv output channels, "M" = 2x2 max-pool.
VGG19_CFG = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip

#: Indices (in ``VGG19Features.features``) of the ReLU after conv1_1, conv2_1,
#: conv3_1, conv4_1 and conv5_1: the layers of the pix2pixHD/SPADE VGG loss.
VGG19_TAPS = (1, 6, 11, 20, 29)


class VGG19Features(nn.Module):
    """VGG19 ``features`` stack laid out like torchvision's ``vgg19().features``.

    The module has one child, ``features`` (an ``nn.Sequential``), so a
    torchvision state dict ``features.N.weight`` / ``features.N.bias`` loads
    as is. Only layers up to relu5_1 are built.

    Notes
    -----
    ``forward(x)`` expects ImageNet-normalised RGB and returns the activations
    at :data:`VGG19_TAPS` (relu1_1 ... relu5_1).
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for item in VGG19_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = item
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG19_TAPS:
                taps.append(x)
        return taps


def load_vgg19_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read VGG19 conv weights from a local ``.safetensors`` or torch file.

    Accepts a torchvision ``vgg19`` state dict (``features.N.*`` keys; the
    classifier keys are ignored) or one with bare ``N.weight`` keys. Torch
    files are read with ``torch.load(weights_only=True)`` (no arbitrary
    unpickling).

    Returns
    -------
    dict
        ``features.N.weight`` / ``features.N.bias`` tensors for the layers of
        :class:`VGG19Features`.

    Raises
    ------
    ModelError
        If the file is missing, unreadable or lacks the needed tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"VGG weights {path}: file not found; pass the path of a local VGG19 file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"VGG weights {path}: cannot be read ({reason}); "
            f"give a VGG19 .safetensors or .pth state dict"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"VGG weights {path}: not a state dict; give a VGG19 state dict file")
    wanted = VGG19Features().state_dict()
    out = {}
    for key, ref in wanted.items():
        bare = key[len("features."):]
        tensor = state.get(key, state.get(bare))
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(ref.shape):
            raise ModelError(
                f"VGG weights {path}: tensor {key} missing or of the wrong shape; "
                f"give torchvision vgg19 weights"
            )
        out[key] = tensor.to(torch.float32)
    return out
