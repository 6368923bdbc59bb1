"""Is the derivative-off update the gradient? Exactly where the math says so."""

import pytest

from chainrule.lab.config import LabConfig
from chainrule.lab.probes import PROBE_CASES, ProbeCase, probe_case


@pytest.mark.parametrize("case", PROBE_CASES, ids=lambda c: f"{c.hidden}-{c.output}-{c.loss}")
def test_derivative_off_is_the_gradient_exactly_where_the_math_says(case: ProbeCase) -> None:
    probe = probe_case(LabConfig(steps=300), case, "xor")
    if case.expected.startswith("yes"):  # the same direction, to rounding
        assert probe.cosine_at_init == pytest.approx(1.0, abs=1e-9)
        assert probe.cosine_trained == pytest.approx(1.0, abs=1e-9)
    else:  # once training has moved the units off their linear range, clearly not
        assert probe.cosine_trained < 0.99
