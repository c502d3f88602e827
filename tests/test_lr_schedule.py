"""The cosine-with-warm-up learning-rate factor, against hand-computed values."""
from __future__ import annotations

import math

import pytest

from gtahuman.systems.hmr import cosine_with_warmup


def test_warmup_is_linear_then_cosine_reaches_zero():
    factor = cosine_with_warmup(total_steps=110, warmup_steps=10)
    assert [factor(i) for i in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert factor(10) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)  # half-way through the 100 decay steps
    assert factor(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert factor(110) == pytest.approx(0.0, abs=1e-12)
    assert factor(500) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at zero


def test_no_warmup_starts_at_full_rate():
    factor = cosine_with_warmup(total_steps=4)
    assert [factor(i) for i in range(5)] == pytest.approx([1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5,
                                                           0.5 - 0.5 * math.cos(math.pi / 4), 0.0])
