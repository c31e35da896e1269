import math

import pytest
import torch
from torch import nn

from digitlab.analysis import (
    confusion_matrix,
    expected_calibration_error,
    find_mistakes,
    fit_temperature,
    least_confident_correct,
    metrics_table,
    per_class_metrics,
    reliability,
    saliency,
    top_confusions,
    weights_digest,
)
from digitlab.models import DigitRecognitionCNN
from digitlab.train import batched_logits

# Six items, three classes: true 0 -> 0, 1; true 1 -> 1; true 2 -> 2, 0, 2.
Y_TRUE = torch.tensor([0, 0, 1, 2, 2, 2])
Y_PRED = torch.tensor([0, 1, 1, 2, 0, 2])

# Five items, three classes; predictions 1 1 0 0 0, so items 0, 2 and 4 are mistakes.
PROBS = torch.tensor([[0.20, 0.70, 0.10],   # true 0, predicted 1 (0.7): mistake
                      [0.10, 0.80, 0.10],   # true 1, predicted 1 (0.8)
                      [0.90, 0.05, 0.05],   # true 2, predicted 0 (0.9): mistake
                      [0.40, 0.35, 0.25],   # true 0, predicted 0 (0.4)
                      [0.60, 0.30, 0.10]])  # true 1, predicted 0 (0.6): mistake
LABELS = torch.tensor([0, 1, 2, 0, 1])


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    assert cm.tolist() == [[1, 1, 0],
                           [0, 1, 0],
                           [1, 0, 2]]
    assert cm.sum(1).tolist() == [2, 1, 3]  # row sums: how many of each true class


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="1-D tensor of 6 labels"):
        confusion_matrix(Y_TRUE, Y_PRED[:5], num_classes=3)
    with pytest.raises(ValueError, match="labels in 0..2"):
        confusion_matrix(Y_TRUE, Y_PRED + 1, num_classes=3)
    with pytest.raises(TypeError, match="integer class labels"):
        confusion_matrix(Y_TRUE.float(), Y_PRED, num_classes=3)


def test_per_class_metrics_by_hand():
    m = per_class_metrics(confusion_matrix(Y_TRUE, Y_PRED, num_classes=3))
    # precision = hits / times predicted (column), recall = hits / true count (row)
    assert m["precision"].tolist() == pytest.approx([1 / 2, 1 / 2, 2 / 2])
    assert m["recall"].tolist() == pytest.approx([1 / 2, 1 / 1, 2 / 3])
    assert m["f1"].tolist() == pytest.approx([0.5, 2 / 3, 0.8])
    assert m["support"].tolist() == [2, 1, 3]


def test_per_class_metrics_absent_class_is_zero_not_nan():
    m = per_class_metrics(torch.tensor([[3, 0], [0, 0]]))
    assert m["precision"].tolist() == [1.0, 0.0]
    assert m["recall"].tolist() == [1.0, 0.0]
    assert m["f1"].tolist() == [1.0, 0.0]


def test_metrics_table():
    table = metrics_table(confusion_matrix(Y_TRUE, Y_PRED, num_classes=3))
    assert list(table.columns) == ["precision", "recall", "f1", "support"]
    assert table.loc[2, "recall"] == pytest.approx(2 / 3)


def test_top_confusions_largest_first_true_then_predicted():
    cm = torch.tensor([[5, 3, 0],
                       [0, 4, 1],
                       [2, 0, 6]])
    assert top_confusions(cm) == [(0, 1, 3), (2, 0, 2), (1, 2, 1)]
    assert top_confusions(cm, k=1) == [(0, 1, 3)]
    assert top_confusions(torch.eye(3, dtype=torch.long), k=None) == []


def test_find_mistakes_most_confident_first():
    assert find_mistakes(PROBS, LABELS).tolist() == [2, 0, 4]
    assert find_mistakes(PROBS, LABELS, true=0).tolist() == [0]
    assert find_mistakes(PROBS, LABELS, pred=0).tolist() == [2, 4]
    assert find_mistakes(PROBS, LABELS, true=1, pred=0).tolist() == [4]
    assert find_mistakes(PROBS, LABELS, true=1, pred=2).tolist() == []


def test_least_confident_correct():
    assert least_confident_correct(PROBS, LABELS).tolist() == [3, 1]
    assert least_confident_correct(PROBS, LABELS, k=1).tolist() == [3]


def test_probs_and_labels_must_match():
    with pytest.raises(ValueError, match="one row per label"):
        find_mistakes(PROBS[:4], LABELS)
    with pytest.raises(ValueError, match="labels in 0..2"):
        reliability(PROBS, LABELS + 3)


# Confidence (the largest probability) and correctness, chosen to land in known bins of width 0.1.
CAL_PROBS = torch.tensor([[0.55, 0.45, 0.00],   # 0.55 -> bin 5 (0.5, 0.6], correct
                          [0.42, 0.58, 0.00],   # 0.58 -> bin 5, wrong
                          [0.95, 0.05, 0.00],   # 0.95 -> bin 9 (0.9, 1.0], correct
                          [1.00, 0.00, 0.00],   # 1.00 -> bin 9 (upper edges belong to the bin), correct
                          [0.50, 0.30, 0.20],   # 0.50 -> bin 4 (0.4, 0.5], correct
                          [0.25, 0.75, 0.00]])  # 0.75 -> bin 7 (0.7, 0.8], wrong
CAL_LABELS = torch.tensor([0, 0, 0, 0, 0, 0])


def test_reliability_bins_by_hand():
    rel = reliability(CAL_PROBS, CAL_LABELS, n_bins=10)
    assert rel["edges"].tolist() == pytest.approx([i / 10 for i in range(11)])
    assert rel["count"].tolist() == [0, 0, 0, 0, 1, 2, 0, 1, 0, 2]
    assert rel["confidence"].tolist() == pytest.approx([0, 0, 0, 0, 0.5, 0.565, 0, 0.75, 0, 0.975])
    assert rel["accuracy"].tolist() == pytest.approx([0, 0, 0, 0, 1, 0.5, 0, 0, 0, 1])


def test_expected_calibration_error_by_hand():
    expected = (1 * abs(1 - 0.5) + 2 * abs(0.5 - 0.565) + 1 * abs(0 - 0.75) + 2 * abs(1 - 0.975)) / 6
    assert expected_calibration_error(CAL_PROBS, CAL_LABELS, n_bins=10) == pytest.approx(expected)
    # One bin: |accuracy - mean confidence| over everything.
    mean_conf = (0.55 + 0.58 + 0.95 + 1.0 + 0.5 + 0.75) / 6
    assert expected_calibration_error(CAL_PROBS, CAL_LABELS, n_bins=1) == pytest.approx(abs(4 / 6 - mean_conf))


def test_calibrated_predictions_have_zero_ece():
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0)


def test_fit_temperature_recovers_overconfidence():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 10, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g).flatten()  # labels drawn from softmax(z): calibrated
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.05)
    T = fit_temperature(3 * z, y)  # three times too sharp
    assert T == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error((3 * z).softmax(1), y)
    after = expected_calibration_error((3 * z / T).softmax(1), y)
    assert after < before / 3


def test_fit_temperature_needs_some_mistakes():
    z, y = torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1])  # both right: best T is 0
    with pytest.raises(ValueError, match="no best temperature"):
        fit_temperature(z, y)


def test_fit_temperature_finds_the_lowest_loss_a_search_finds():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(500, 10, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 10, (500,), generator=g)
    y[:300] = z[:300].argmax(1)   # 60% right, with logits far too sharp for that: the best T is well above 1

    def nll(t: float) -> float:
        return torch.nn.functional.cross_entropy(z / t, y).item()

    grid = torch.linspace(0.5, 20, 3901).tolist()
    searched = min(grid, key=nll)
    T = fit_temperature(z, y)
    assert searched > 2 and T == pytest.approx(searched, abs=0.01)
    assert nll(T) <= min(nll(T * 1.01), nll(T / 1.01), nll(searched))


def test_batched_logits_matches_net_in_eval_mode():
    torch.manual_seed(0)
    net = DigitRecognitionCNN().train()
    X = torch.randn(7, 1, 28, 28)
    logits = batched_logits(net, X, batch_size=3)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        assert torch.allclose(logits, net(X), atol=1e-5)


def test_saliency_of_linear_model_is_its_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 3))
    X = torch.randn(4, 1, 28, 28)
    W = net[1].weight.detach()
    s = saliency(net, X, target=torch.tensor([0, 2, 1, 2]))
    assert s.shape == (4, 28, 28)
    for i, t in enumerate([0, 2, 1, 2]):
        assert torch.allclose(s[i], W[t].abs().reshape(28, 28))
    predicted = net(X).argmax(1)
    assert torch.allclose(saliency(net, X), W[predicted].abs().reshape(4, 28, 28))
    assert torch.allclose(saliency(net, X, target=1), W[1].abs().reshape(1, 28, 28).expand(4, 28, 28))
    assert net[1].weight.grad is None  # the network's own gradients are left alone


def test_saliency_of_cnn_under_no_grad():
    net = DigitRecognitionCNN().train()
    with torch.no_grad():
        s = saliency(net, torch.randn(2, 1, 28, 28))
    assert s.shape == (2, 28, 28) and (s >= 0).all() and s.sum() > 0
    assert net.training
    with pytest.raises(ValueError, match="target must be"):
        saliency(net, torch.randn(2, 1, 28, 28), target=torch.tensor([0, 1, 2]))
    assert not math.isnan(s.sum().item())


def test_weights_digest_changes_with_any_weight_only():
    torch.manual_seed(0)
    net = DigitRecognitionCNN()
    digest = weights_digest(net)
    assert len(digest) == 12 and int(digest, 16) >= 0
    torch.manual_seed(0)
    assert weights_digest(DigitRecognitionCNN().eval()) == digest  # same weights, whatever the mode
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 1e-6  # one weight, slightly
    assert weights_digest(net) != digest
    assert len(weights_digest(net, length=40)) == 40
    assert weights_digest(nn.Linear(2, 2).to(torch.bfloat16))  # dtypes NumPy lacks
