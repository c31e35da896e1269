import torch

from digitlab.analysis import confusion_matrix, find_mistakes, split_logits
from digitlab.models import DigitRecognitionCNN
from digitlab.widgets import mistake_caption, mistake_explorer, mistake_options


def _untrained_predictions(n: int = 40):
    """An untrained network's probabilities for random inputs and labels: plenty of mistakes."""
    torch.manual_seed(0)
    net = DigitRecognitionCNN()
    X, y = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))
    return net, X, y, split_logits(net, X).softmax(1)


def test_mistake_options_list_all_then_pairs_by_count():
    cm = torch.tensor([[5, 3, 0],
                       [0, 4, 1],
                       [2, 0, 6]])
    assert mistake_options(cm) == [("all mistakes (6)", (None, None)),
                                   ("true 0 → predicted 1 (3)", (0, 1)),
                                   ("true 2 → predicted 0 (2)", (2, 0)),
                                   ("true 1 → predicted 2 (1)", (1, 2))]


def test_mistake_caption():
    probs = torch.tensor([[0.1, 0.3, 0.6], [0.7, 0.2, 0.1]])
    assert mistake_caption(0, probs, torch.tensor([1, 0])) == "image #0: true 1 (p = 0.300), predicted 2 (p = 0.600)"


def test_explorer_steps_through_the_chosen_pair():
    net, X, y, probs = _untrained_predictions()
    box = mistake_explorer(net, X, y, probs)
    pair, step = box.children[0].children
    caption = box.children[1]
    everything = find_mistakes(probs, y)
    assert pair.value == (None, None) and step.max == len(everything) - 1  # starts on all mistakes
    assert caption.value.startswith(f"1 of {len(everything)}, image #{int(everything[0])}:")

    cm = confusion_matrix(y, probs.argmax(1))
    assert len(pair.options) == 1 + int((cm - torch.diag(cm.diag()) > 0).sum())
    # Choose the most frequent pair: the slider spans its mistakes, the caption shows the most confident one.
    label, (t, p) = pair.options[1]
    pair.value = (t, p)
    chosen = find_mistakes(probs, y, true=t, pred=p)
    assert step.max == len(chosen) - 1 and step.value == 0
    assert caption.value == f"1 of {len(chosen)}, " + mistake_caption(int(chosen[0]), probs, y)
    assert label.endswith(f"({len(chosen)})")
    # Step to the last one.
    step.value = step.max
    assert caption.value == f"{len(chosen)} of {len(chosen)}, " + mistake_caption(int(chosen[-1]), probs, y)
    # Back to all mistakes: the slider returns to the first.
    pair.value = (None, None)
    assert step.value == 0 and step.max == len(everything) - 1
    assert caption.value.startswith(f"1 of {len(everything)}, image #{int(everything[0])}:")


def test_explorer_without_mistakes():
    net, X, _, probs = _untrained_predictions(5)
    box = mistake_explorer(net, X, probs.argmax(1), probs)
    assert box.children[1].value == "no mistakes to show"
    assert box.children[0].children[0].options == (("all mistakes (0)", (None, None)),)
