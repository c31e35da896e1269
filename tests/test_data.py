import gzip
import hashlib

import numpy as np
import pytest
import torch

from digitlab import data
from digitlab.data import (
    Batches,
    MNISTDataset,
    MNISTFileError,
    augment,
    load_mnist,
    mnist_splits,
    normalization_constants,
    normalize,
    parse_idx,
    read_idx,
    stratified_split,
)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_round_trip_plain_and_gzipped(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).reshape(3, 28, 28).astype(np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "img.gz").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "img")[0], images)
    np.testing.assert_array_equal(read_idx(tmp_path / "img.gz")[0], images)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels)), labels)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"\x01" + b[1:], "bad magic"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "type code"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b + b"\x00", "truncated or corrupted"),
    (lambda b: b[:6], "truncated header"),
    (lambda b: b[:3] + b"\x04" + b"\xff" * 16, r"header \(4294967295, .* needs"),   # sizes past 64 bits
])
def test_corrupt_idx_is_refused(mangle, message):
    good = idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(MNISTFileError, match=message):
        parse_idx(mangle(good), name="x")


def test_bad_gzip_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(MNISTFileError, match="train-images-idx3-ubyte.gz"):
        read_idx(path)


@pytest.fixture
def fake_data_dir(tmp_path, monkeypatch):
    """A DIGITLAB_DATA folder with tiny but well-formed 'MNIST' files, their MD5s registered."""
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path))
    monkeypatch.setattr(data, "DOWNLOAD_DIR", tmp_path / "downloads")
    monkeypatch.setattr(data, "SIZES", {"train": 20, "test": 10})
    rng = np.random.default_rng(0)
    md5 = {}
    for split, n in (("train", 20), ("test", 10)):
        img_name, lbl_name = data.FILES[split]
        for name, array in ((img_name, rng.integers(0, 256, (n, 28, 28))), (lbl_name, np.arange(n) % 10)):
            raw = idx_bytes(array.astype(np.uint8))
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw))
            md5[name] = hashlib.md5(raw).hexdigest()
    monkeypatch.setattr(data, "MD5", md5)
    return tmp_path


def test_load_from_digitlab_data(fake_data_dir):
    X, y = load_mnist("train")
    assert X.shape == (20, 28, 28) and X.dtype == torch.uint8
    assert y.dtype == torch.int64 and y.tolist() == [i % 10 for i in range(20)]


def test_md5_mismatch_names_the_file_and_keeps_it(fake_data_dir):
    path = fake_data_dir / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] ^= 0xFF  # one flipped pixel: header and size still fine
    corrupted = gzip.compress(bytes(raw))
    path.write_bytes(corrupted)
    with pytest.raises(MNISTFileError, match="t10k-images-idx3-ubyte.gz.*MD5"):
        load_mnist("test")
    assert path.read_bytes() == corrupted  # nothing overwritten


def test_truncated_file_names_the_file(fake_data_dir):
    path = fake_data_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(MNISTFileError, match="train-labels-idx1-ubyte.gz.*truncated"):
        load_mnist("train")


def test_wrong_count_is_refused(fake_data_dir, monkeypatch):
    monkeypatch.setattr(data, "SIZES", {"train": 60_000, "test": 10_000})
    with pytest.raises(MNISTFileError, match="expected 60000"):
        load_mnist("train")


def test_missing_files_offline_say_where_they_looked(fake_data_dir, monkeypatch):
    (fake_data_dir / "train-images-idx3-ubyte.gz").unlink()

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist("train")
    message = str(err.value)
    assert str(fake_data_dir) in message and "DIGITLAB_DATA" in message and "unreachable" in message
    assert not list((fake_data_dir / "downloads").glob("*.gz"))  # no half-written download left


def test_download_is_verified_then_renamed_into_place(fake_data_dir, monkeypatch):
    source = fake_data_dir / "train-images-idx3-ubyte.gz"
    payload = source.read_bytes()
    source.unlink()

    def fake_download(url, root, filename):
        (data.Path(root) / filename).write_bytes(payload)

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    X, _ = load_mnist("train")
    assert X.shape == (20, 28, 28)
    assert (fake_data_dir / "downloads" / "train-images-idx3-ubyte.gz").read_bytes() == payload


def test_unknown_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("validation")


def test_real_mnist_sizes_and_constants():
    X, y = load_mnist("train")
    assert X.shape == (60_000, 28, 28) and y.shape == (60_000,)
    assert torch.bincount(y).tolist()[:3] == [5923, 6742, 5958]
    mean, std = normalization_constants(X)
    assert round(mean, 4) == data.MNIST_MEAN and round(std, 4) == data.MNIST_STD
    X_test, _ = load_mnist("test")
    assert X_test.shape == (10_000, 28, 28)


def test_stratified_split_is_fixed_and_balanced():
    y = torch.arange(1000) % 10
    rest, chosen = stratified_split(y, 105, seed=3)
    assert len(chosen) == 105 and len(rest) == 895
    assert set(rest.tolist()).isdisjoint(chosen.tolist())
    counts = torch.bincount(y[chosen], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert torch.equal(chosen, stratified_split(y, 105, seed=3)[1])
    assert not torch.equal(chosen, stratified_split(y, 105, seed=4)[1])


def test_mnist_splits_sizes_and_disjoint():
    splits = mnist_splits(n_train=1000)
    assert [len(splits[k][1]) for k in ("train", "val", "test")] == [1000, 5000, 10000]
    assert splits["train"][0].shape == (1000, 1, 28, 28) and splits["train"][0].dtype == torch.float32
    full = mnist_splits()
    assert len(full["train"][1]) == 55_000
    assert torch.bincount(full["val"][1]).tolist() == torch.bincount(splits["val"][1]).tolist()


def test_normalize_uint8_and_float_agree():
    X = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    assert torch.allclose(normalize(X), normalize(X.float() / 255))
    assert normalize(X).shape == (4, 1, 28, 28)


def test_batches_cover_every_item_once():
    X, y = torch.arange(10).float().view(10, 1, 1, 1), torch.arange(10)
    batches = Batches(X, y, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 3
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert [len(yb) for _, yb in Batches(X, y, 4)] == [4, 4, 2]


def test_augment_keeps_shape_and_moves_pixels():
    X = normalize(load_mnist("test")[0][:16])
    out = augment(X, generator=torch.Generator().manual_seed(0))
    assert out.shape == X.shape
    assert not torch.allclose(out, X)
    # Shifts of up to 2 px and rotations of up to 10 degrees keep the ink and move its centre a little.
    ink_before, ink_after = X - X.min(), out - X.min()
    assert torch.allclose(ink_after.sum((1, 2, 3)), ink_before.sum((1, 2, 3)), rtol=0.1)
    grid = torch.arange(28.0)

    def centre(ink):
        mass = ink.sum((1, 2, 3))
        return torch.stack([(ink.sum(3)[:, 0] * grid).sum(1) / mass, (ink.sum(2)[:, 0] * grid).sum(1) / mass], 1)

    moved = (centre(ink_after) - centre(ink_before)).norm(dim=1)
    assert moved.max() < 4 and moved.mean() > 0.3
    assert torch.allclose(augment(X, max_shift=0, max_degrees=0), X, atol=1e-5)


def test_dataset_for_dataloader():
    ds = MNISTDataset("test")
    x, label = ds[0]
    assert len(ds) == 10_000 and x.shape == (1, 28, 28) and label == 7
    Xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert Xb.shape == (8, 1, 28, 28) and yb.tolist()[:3] == [7, 2, 1]


def test_gzipped_file_without_gz_in_its_name_is_read(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8)
    (tmp_path / "img").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "img")[0], images)


def test_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "img").write_bytes(b"")
    with pytest.raises(MNISTFileError, match="img: the file is empty"):
        read_idx(tmp_path / "img")


def test_unreadable_file_says_permission_denied_and_not_delete(tmp_path, monkeypatch):
    (tmp_path / "img").write_bytes(idx_bytes(np.zeros((2, 4), dtype=np.uint8)))

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(data.Path, "read_bytes", denied)  # as for a file of another user (root reads anything)
    with pytest.raises(MNISTFileError, match="permission denied") as err:
        read_idx(tmp_path / "img")
    assert "Delete" not in str(err.value)


def test_digitlab_data_pointing_at_a_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "train-images-idx3-ubyte.gz"))
    with pytest.raises(ValueError, match="is a file; set it to the folder"):
        load_mnist("train")


@pytest.mark.parametrize(("sizes", "message"), [({"n_train": 10**9}, "n_train must be a whole number from 1 to 55,000"),
                                                ({"n_train": 0}, "n_train must be"),
                                                ({"n_val": 60_000}, "n_val must be a whole number from 1 to 59,999")])
def test_split_sizes_mnist_cannot_give_are_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        mnist_splits(**sizes)
