import torch

from digitlab.models import DigitRecognitionCNN, count_parameters, summary


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
