"""The lab's results as text: how a target reached and then lost is shown."""

from chainrule.lab import report
from chainrule.lab.experiments import Curve, Run


def test_a_target_reached_and_lost_again_is_starred_in_the_table() -> None:
    curve = Curve(
        steps=[0, 10, 20],
        train_loss=[0.7] * 3,
        train_accuracy=[0.5] * 3,
        holdout_accuracy=[0.5, 1.0, 0.9],
    )
    run = Run("xor", "sigmoid", False, curve, params={})
    assert report.steps_to(run, 0.9) == "10"  # 0.9 at the end: held
    assert report.steps_to(run, 1.0) == "10*"  # 100% once, 90% at the end
    assert report.steps_to(run, 0.95) == "10*"
