"""Small argument checks shared by the model constructors (raise, never assert)."""

from __future__ import annotations

import torch

__all__ = ["positive_int", "choice", "check_generator_input"]


def positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def choice(owner: str, name: str, value, options) -> str:
    """Return ``value`` if it is one of ``options``, else raise ValueError."""
    if value not in options:
        raise ValueError(
            f"{owner}: unknown {name} {value!r}; use one of {', '.join(map(str, options))}"
        )
    return value


def check_generator_input(
    owner: str,
    labels: torch.Tensor,
    in_channels: int,
    size_multiple: int,
    noise: torch.Tensor | None,
) -> None:
    """Check ``labels`` ``[B, C, H, W]`` and optional ``noise`` ``[B, 1, H, W]``.

    Raises
    ------
    ValueError
        One line naming the wrong shape and the rule it breaks.
    """
    if labels.dim() != 4 or labels.shape[1] != in_channels:
        raise ValueError(
            f"{owner}: labels must be [B, {in_channels}, H, W], got {list(labels.shape)}"
        )
    height, width = labels.shape[2], labels.shape[3]
    if height % size_multiple or width % size_multiple:
        raise ValueError(
            f"{owner}: tile {height}x{width} px is not a multiple of {size_multiple}; "
            f"pad or crop tiles to a multiple of size_multiple"
        )
    if noise is not None:
        if (
            noise.dim() != 4
            or noise.shape[1] != 1
            or tuple(noise.shape[2:]) != (height, width)
            or noise.shape[0] not in (1, labels.shape[0])
        ):
            raise ValueError(
                f"{owner}: noise must be [B or 1, 1, {height}, {width}], got {list(noise.shape)}"
            )
