"""How often the generator steps relative to the discriminator.

:class:`DynamicRatio`: the discriminator always steps; generator steps are
switched off while the discriminator's (smoothed) loss is above ``high`` --
the discriminator is losing, so the generator waits -- and switched back on
once it drops below ``low``. :class:`FixedRatio`: ``d_steps`` discriminator
steps per ``g_steps`` generator steps. Both count what really happened, so the
realised D:G ratio can be logged per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RatioCounts:
    d_steps: int = 0
    g_steps: int = 0

    @property
    def ratio(self) -> float:
        return self.d_steps / max(self.g_steps, 1)


class _Counting:
    """Counts of the steps actually taken, collected per epoch."""

    counts: RatioCounts

    def record(self, d: bool, g: bool) -> None:
        self.counts.d_steps += int(d)
        self.counts.g_steps += int(g)

    def take_counts(self) -> RatioCounts:
        out, self.counts = self.counts, RatioCounts()
        return out


@dataclass
class DynamicRatio(_Counting):
    low: float = 1.0  # D loss = sum of its real and fake terms: hinge and BCE sit near 1.4-2.0 when
    high: float = 2.2  # D cannot tell real from fake; above `high` it is losing, so G pauses
    ema: float = 0.9
    g_on: bool = True
    loss_ema: float | None = None
    counts: RatioCounts = field(default_factory=RatioCounts)

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high:
            raise ValueError(f"dynamic ratio band needs 0 <= low < high, got {self.low}, {self.high}")

    def should_step_d(self) -> bool:
        return True

    def should_step_g(self, d_loss: float) -> bool:
        """Update with this step's discriminator loss; True when the generator steps now."""
        self.loss_ema = d_loss if self.loss_ema is None else self.ema * self.loss_ema + (1 - self.ema) * d_loss
        if self.g_on and self.loss_ema > self.high:
            self.g_on = False
        elif not self.g_on and self.loss_ema < self.low:
            self.g_on = True
        return self.g_on

    def state(self) -> dict:
        return {"kind": "dynamic", "low": self.low, "high": self.high, "ema": self.ema, "g_on": self.g_on,
                "loss_ema": self.loss_ema, "d_steps": self.counts.d_steps, "g_steps": self.counts.g_steps}

    def load_state(self, s: dict) -> None:
        """Restore from :meth:`state` (a fixed controller's state only restores the counts)."""
        if s.get("kind") == "dynamic":
            self.g_on, self.loss_ema = bool(s["g_on"]), s["loss_ema"]
        self.counts = RatioCounts(int(s.get("d_steps", 0)), int(s.get("g_steps", 0)))


@dataclass
class FixedRatio(_Counting):
    d_steps: int = 1
    g_steps: int = 1
    position: int = 0
    counts: RatioCounts = field(default_factory=RatioCounts)

    def __post_init__(self) -> None:
        if self.d_steps < 1 or self.g_steps < 1:
            raise ValueError("fixed ratio needs d_steps >= 1 and g_steps >= 1")

    def _cycle(self) -> int:
        return max(self.d_steps, self.g_steps)

    def should_step_d(self) -> bool:
        return self.position % self._cycle() < self.d_steps

    def should_step_g(self, d_loss: float) -> bool:
        step_g = self.position % self._cycle() < self.g_steps
        self.position += 1
        return step_g

    def state(self) -> dict:
        return {"kind": "fixed", "d": self.d_steps, "g": self.g_steps, "position": self.position,
                "d_steps": self.counts.d_steps, "g_steps": self.counts.g_steps}

    def load_state(self, s: dict) -> None:
        """Restore from :meth:`state` (a dynamic controller's state only restores the counts)."""
        if s.get("kind") == "fixed":
            self.position = int(s["position"])
        self.counts = RatioCounts(int(s.get("d_steps", 0)), int(s.get("g_steps", 0)))


def parse_ratio(text: str) -> DynamicRatio | FixedRatio:
    """'dynamic', 'dynamic:LOW:HIGH' or 'D:G' (e.g. '2:1')."""
    parts = text.split(":")
    try:
        if parts[0] == "dynamic":
            return DynamicRatio(*(float(p) for p in parts[1:3])) if len(parts) == 3 else DynamicRatio()
        if len(parts) == 2:
            return FixedRatio(int(parts[0]), int(parts[1]))
    except ValueError as exc:
        from ..errors import InputError
        raise InputError(f"--ratio '{text}': {exc}") from None
    from ..errors import InputError
    raise InputError(f"--ratio '{text}' must be 'dynamic', 'dynamic:LOW:HIGH' or 'D:G' such as '2:1'")
