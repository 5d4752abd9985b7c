"""MultiSHAP metrics on hand-computed matrices."""

import numpy as np
import pytest

from multishap.service.math.metrics import dataset_metrics, instance_metrics


def test_instance_metrics_by_hand():
    phi = np.array([[0.5, -0.25], [0.0, 1.0], [-0.75, 0.5]])
    im = instance_metrics(phi)
    assert im.synergy == pytest.approx(2.0)
    assert im.suppression == pytest.approx(1.0)
    assert im.total == pytest.approx(3.0)
    assert im.synergy_ratio == pytest.approx(2 / 3)


def test_all_suppression_gives_ratio_zero():
    im = instance_metrics(-np.ones((2, 3)))
    assert (im.total, im.synergy, im.suppression, im.synergy_ratio) == (6.0, 0.0, 6.0, 0.0)


def test_zero_matrix_gives_ratio_one_half():
    im = instance_metrics(np.zeros((4, 2)))
    assert (im.total, im.synergy, im.suppression, im.synergy_ratio) == (0.0, 0.0, 0.0, 0.5)


def test_dataset_metrics_by_hand():
    dm = dataset_metrics([0.61, 0.48, 0.55])
    assert dm.msr == pytest.approx((0.61 + 0.48 + 0.55) / 3)
    assert dm.sdr == pytest.approx(2 / 3)
    assert dataset_metrics([0.5, 0.5]).sdr == 0.0


@pytest.mark.parametrize("bad", [np.array([[np.nan]]), np.zeros((0, 2))])
def test_instance_metrics_refuses_bad_matrices(bad):
    with pytest.raises(ValueError):
        instance_metrics(bad)


@pytest.mark.parametrize("bad", [[], [1.5], [0.2, float("nan")]])
def test_dataset_metrics_refuses_bad_ratios(bad):
    with pytest.raises(ValueError):
        dataset_metrics(bad)
