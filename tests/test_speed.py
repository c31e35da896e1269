import torch

from digitlab import speed
from digitlab.data import load_mnist, mnist_splits, normalize


def test_reference_pipeline_is_the_standard_one():
    loader = speed.reference_loader(n_train=256)
    assert loader.batch_size == 64 and len(loader.dataset) == 256
    assert isinstance(loader.sampler, torch.utils.data.RandomSampler)
    dataset = loader.dataset
    X, y = dataset[0]
    assert X.shape == (1, 28, 28) and X.dtype == torch.float32 and isinstance(y, int)
    # ToTensor + Normalize on a PIL image gives exactly digitlab's normalised input of the same image.
    torch.testing.assert_close(X, normalize(dataset.images[0][None])[0])
    # It serves the same 55,000 training images that digitlab trains on (the first 256 of them here).
    train_X, _ = mnist_splits()["train"]
    torch.testing.assert_close(normalize(dataset.images[:4]), train_X[:4])
    assert len(load_mnist("train")[0]) == 60_000


def test_technique_table_measures_every_row_and_restores_threads():
    threads = torch.get_num_threads()
    speeds = speed.techniques(n_train=256, num_batches=2)
    assert torch.get_num_threads() == threads
    expected = [name for name in speed.TECHNIQUES if name != "compile" and (name != "one_thread" or threads > 1)]
    assert list(speeds) == expected
    assert all(ips > 0 for ips in speeds.values())
    table = speed.techniques_table(speeds)
    assert table.count("\n") == len(speeds) + 1 and "| 1.00 |" in table.splitlines()[2]
    assert speed.TECHNIQUES["reference"] in table.splitlines()[2]


def test_technique_rows_take_turns_and_keep_their_fastest(monkeypatch):
    calls = []

    def fake_speed(X, y, batch_size=64, channels_last=True, bf16=False, compiled=False, threads=None,
                   num_batches=30, repeats=1, seed=0):
        calls.append((batch_size, channels_last, bf16, threads))
        return 100.0 * len(calls)  # later measurements are faster: each row must keep its last round

    monkeypatch.setattr(speed, "train_speed", fake_speed)
    monkeypatch.setattr(speed, "reference_loader", lambda n_train=None: None)
    monkeypatch.setattr(speed, "reference_train", lambda loader, num_batches=None: (None, calls.append("ref") or 1.0))
    speeds = speed.techniques(n_train=256, num_batches=2, repeats=3)
    per_round = len(speeds)
    assert len(calls) == 3 * per_round
    assert calls[:per_round] == calls[per_round: 2 * per_round]  # every round measures every row, in order
    assert list(speeds.values())[1:] == [100.0 * (2 * per_round + i + 1) for i in range(1, per_round)]
