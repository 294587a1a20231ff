"""Issue 28: a texture bank's strips in flight between the quilting threads, the render loop and the writer are
uint8 RGB as quilted (at the bank's own scale), not float32 in [-1, 1] (four times the memory, and a conversion
there and back for pixels that come out the same)."""

from __future__ import annotations

import numpy as np

from geogan.pipeline import _to_uint8
from geogan.quilt import margin_px, synthesize
from geogan.quilt_model import QuiltModel, quilt_strip
from test_quilt import CLASSES, WATER, WOOD, bank  # noqa: F401  (the module's small texture bank fixture)


def test_a_strip_at_the_banks_scale_is_its_quilted_uint8_pixels(bank):  # noqa: F811
    model = QuiltModel(bank, {"classes": list(CLASSES)}, np.arange(len(CLASSES), dtype=np.uint8), len(CLASSES))
    m = margin_px(bank.settings)
    classes = np.zeros((40 + 2 * m, 300 + 2 * m), np.uint8)
    classes[:, 150:] = WATER
    classes[10:30, 20:90] = WOOD
    origin = (100 - m, -m)
    strip = quilt_strip(model, classes, origin, (100.0, 140.0), (100, 140), 300, seed=3)
    assert strip.dtype == np.uint8 and strip.shape == (3, 40, 300) and strip.flags.c_contiguous
    assert np.array_equal(strip, synthesize(bank, classes, origin, seed=3, look=0).transpose(2, 0, 1))
    assert _to_uint8(strip) is strip  # the writer takes it as it is
    as_float = strip.astype(np.float32) / 127.5 - 1  # what the strip was before: the same pixels back
    assert np.array_equal(_to_uint8(as_float), strip)
