import pytest
import torch

from digitlab.analysis import saliency
from digitlab.models import DigitRecognitionCNN, count_parameters, eval_mode, summary
from digitlab.train import batched_logits, evaluate, predict_proba


def test_output_shape_and_parameter_count():
    net = DigitRecognitionCNN()
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert count_parameters(net) == 421_834


def test_state_dict_keys_match_the_paper():
    keys = set(DigitRecognitionCNN().state_dict())
    expected = {f"{layer}.{p}" for layer in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")}
    expected |= {f"{bn}.{p}" for bn in ("bn1", "bn2")
                 for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert keys == expected
    assert DigitRecognitionCNN().fc1.in_features == 3136


def test_ablation_options():
    net = DigitRecognitionCNN(batch_norm=False, dropout1=0.0, dropout2=0.0)
    assert count_parameters(net) == 421_834 - 64 - 128
    net.train()
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(net(x), net(x))  # no dropout: training mode is deterministic


def test_dropout_only_in_training_mode():
    net = DigitRecognitionCNN(batch_norm=False)
    x = torch.randn(4, 1, 28, 28)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


def test_summary_table():
    net = DigitRecognitionCNN()
    net.train()
    table = summary(net)
    assert "fc1" in table and "[1, 128]" in table and "401,536" in table and "421,834" in table
    assert "[1, 64, 7, 7]" in table
    assert net.training  # summary leaves the mode as it found it


def test_eval_mode_switches_dropout_off_and_restores_the_mode_even_after_an_error():
    net = DigitRecognitionCNN().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        assert not net.training and not net.dropout1.training
        raise RuntimeError("boom")
    assert net.training and net.dropout1.training
    with eval_mode(net.eval()):
        pass
    assert not net.training  # a network in evaluation mode stays in it


def test_every_inference_helper_leaves_the_mode_as_it_found_it():
    torch.manual_seed(0)
    X, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    raw = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    for training in (True, False):
        net = DigitRecognitionCNN().train(training)
        for use in (lambda n: evaluate(n, X, y), lambda n: predict_proba(n, raw), lambda n: batched_logits(n, X),
                    lambda n: saliency(n, X), summary):
            use(net)
            assert net.training == training and net.dropout2.training == training
        if training:  # and gives the answers of evaluation mode: the same twice, dropout off
            assert torch.equal(batched_logits(net, X), batched_logits(net, X))
