import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from digitlab.data import load_mnist
from digitlab.preprocess import as_grayscale, background, centre_of_mass, enlarge_tiny, preprocess_steps, to_mnist
from digitlab.train import predict


@pytest.fixture(scope="module")
def digits():
    X, y = load_mnist("test")
    return X[:200], y[:200]


def paste(digit: torch.Tensor, scale: float, top: int, left: int, size=(160, 130)) -> np.ndarray:
    """An MNIST digit scaled up and drawn dark-on-white at (top, left) of a larger uint8 picture."""
    big = F.interpolate(digit.float()[None, None] / 255, scale_factor=scale, mode="bilinear")[0, 0]
    canvas = torch.zeros(size)
    canvas[top: top + big.shape[0], left: left + big.shape[1]] = big.clamp(0, 1)
    return (255 * (1 - canvas)).round().to(torch.uint8).numpy()


def test_moved_and_rescaled_digit_comes_back_close_and_classified_the_same(digits, fast_net):
    X, _ = digits
    restored = torch.stack([to_mnist(paste(x, scale=3.5, top=40, left=25)) for x in X])
    original = X.float() / 255
    diff = (restored - original).abs().mean((1, 2))
    # Resampling blurs edges a little; the strokes themselves land on the same pixels.
    assert diff.mean() < 0.05 and diff.max() < 0.12
    agree = (predict(fast_net, restored) == predict(fast_net, X)).float().mean().item()
    assert agree >= 0.97


def test_output_is_mnist_shaped_centred_and_scaled(digits):
    out = to_mnist(paste(digits[0][3], scale=2.2, top=5, left=60))
    assert out.shape == (28, 28) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() == 1
    cy, cx = centre_of_mass(out.numpy())
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = torch.nonzero(out.any(1)).flatten(), torch.nonzero(out.any(0)).flatten()
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == 20


def test_aspect_ratio_is_kept():
    bar = np.zeros((300, 300), dtype=np.uint8)
    bar[50:250, 140:160] = 255  # a tall thin stroke, 200 x 20, light on dark
    out = to_mnist(bar).numpy()
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert len(rows) == 20 and len(cols) == 2


def test_colours_and_formats_give_the_same_result(digits, tmp_path):
    dark_on_light = paste(digits[0][0], scale=2.0, top=10, left=10)
    expected = to_mnist(dark_on_light)
    assert torch.allclose(to_mnist(255 - dark_on_light), expected, atol=1e-5)  # light ink on dark paper
    assert torch.allclose(to_mnist(dark_on_light.astype(np.float32) / 255), expected, atol=1e-5)
    assert torch.equal(to_mnist(torch.from_numpy(dark_on_light)), expected)
    rgb = np.repeat(dark_on_light[..., None], 3, axis=2)
    assert torch.allclose(to_mnist(rgb), expected, atol=1e-5)
    assert torch.allclose(to_mnist(torch.from_numpy(rgb).permute(2, 0, 1)), expected, atol=1e-5)
    assert torch.allclose(to_mnist(Image.fromarray(rgb)), expected, atol=1e-5)
    Image.fromarray(dark_on_light).save(tmp_path / "digit.png")
    assert torch.equal(to_mnist(tmp_path / "digit.png"), expected)
    # A drawing canvas: black strokes on a transparent background (RGBA, alpha 0 outside the strokes).
    rgba = np.zeros(dark_on_light.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = 255 - dark_on_light
    assert torch.allclose(to_mnist(rgba), expected, atol=1e-2)


def test_photo_like_background_noise_is_ignored(digits):
    rng = np.random.default_rng(0)
    clean = paste(digits[0][1], scale=3.0, top=30, left=20)
    noisy = np.clip(clean.astype(float) * 0.8 + 30 + rng.normal(0, 6, clean.shape), 0, 255).astype(np.uint8)
    assert (to_mnist(noisy) - to_mnist(clean)).abs().mean() < 0.03


def test_steps_are_pictures_of_each_stage(digits):
    steps = preprocess_steps(paste(digits[0][2], scale=2.5, top=20, left=30))
    assert list(steps) == ["input", "ink", "cropped", "scaled", "centred"]
    assert steps["input"].shape == (160, 130) and max(steps["scaled"].shape) == 20
    assert steps["centred"].shape == (28, 28)


@pytest.mark.parametrize(("picture", "error", "message"), [
    (np.full((50, 50), 255, dtype=np.uint8), ValueError, "No digit found"),
    (np.zeros((50, 50, 4), dtype=np.uint8), ValueError, "No digit found"),  # an empty, fully transparent canvas
    (np.full((30, 30), np.nan, dtype=np.float32), ValueError, "NaN"),
    (np.full((30, 30), 200.0), ValueError, r"\[0, 1\]"),
    (np.zeros((30, 30, 5), dtype=np.uint8), ValueError, "RGB"),
    (np.zeros((1, 30), dtype=np.uint8), ValueError, "too small"),
    (np.zeros((30, 30), dtype=np.int64), TypeError, "uint8"),
    ([[0, 1], [1, 0]], TypeError, "PIL image"),
    ("missing.png", FileNotFoundError, "No image file"),
    ("notes.png", ValueError, "not an image file"),  # a file that is not a picture
])
def test_bad_pictures_get_clear_errors(tmp_path, picture, error, message):
    if isinstance(picture, str):
        picture = tmp_path / picture
        if picture.name == "notes.png":
            picture.write_text("not a picture")
    with pytest.raises(error, match=message):
        to_mnist(picture)


def test_as_grayscale_range():
    gray = as_grayscale(np.array([[0, 255], [128, 64]], dtype=np.uint8))
    assert gray.dtype == np.float32 and gray.min() == 0 and gray.max() == 1


def test_inversion_is_exact_even_at_the_ink_threshold():
    rng = np.random.default_rng(0)
    for _ in range(10):
        picture = rng.integers(0, 256, (40, 40)).astype(np.uint8)
        picture[:3], picture[-3:], picture[:, :3], picture[:, -3:] = 200, 200, 200, 200  # a light border
        assert torch.allclose(to_mnist(picture), to_mnist(255 - picture), atol=1e-5)


def sixteen_bit_png(pixels: np.ndarray, tmp_path) -> Image.Image:
    """A 16-bit grayscale PNG of 8-bit `pixels`, opened again (PIL mode I;16)."""
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    return Image.open(tmp_path / "16bit.png")


@pytest.mark.parametrize("make", [
    lambda x, tmp: sixteen_bit_png(x, tmp),
    lambda x, tmp: Image.frombytes("I;16B", x.shape[::-1], (x.astype(">u2") * 257).tobytes()),
    lambda x, tmp: Image.fromarray(x.astype(np.float32) / 255),       # mode F, values in [0, 1]
    lambda x, tmp: Image.fromarray(x).convert("RGB").convert("LAB"),  # converts to RGB only
], ids=["I;16 png", "I;16B", "F 0-1", "LAB"])
def test_pictures_in_every_mode_and_bit_depth_are_read(digits, tmp_path, make):
    dark_on_light = paste(digits[0][0], scale=2.0, top=10, left=10)
    assert torch.allclose(to_mnist(make(dark_on_light, tmp_path)), to_mnist(dark_on_light), atol=2e-2)


def test_a_transparent_colour_is_paper(digits):
    black_on_white = np.where(paste(digits[0][0], scale=2.0, top=10, left=10) < 128, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.where(black_on_white == 0, 0, 7).astype(np.uint8))  # black ink, near-black paper
    image.info["transparency"] = 7  # as a PNG's tRNS colour: the paper is see-through, so white on a page
    assert torch.allclose(to_mnist(image), to_mnist(black_on_white), atol=1e-5)


def test_pictures_that_cannot_be_read_say_why():
    with pytest.raises(ValueError, match="mode F picture with values from -5 to 300"):
        to_mnist(Image.fromarray(np.linspace(-5, 300, 900, dtype=np.float32).reshape(30, 30)))


@pytest.mark.parametrize(("size", "speck"), [(50, (slice(20, 21), slice(30, 31))),    # one pixel
                                             (280, (slice(100, 122), slice(50, 72)))])  # one tap of the pad's pen
def test_a_speck_of_ink_is_no_digit(size, speck):
    picture = np.zeros((size, size), dtype=np.uint8)
    picture[speck] = 255
    with pytest.raises(ValueError, match="No digit found: the only ink is a speck"):
        to_mnist(picture)


def test_uneven_light_on_the_page_is_not_ink(digits):
    clean = paste(digits[0][5], scale=3.0, top=30, left=20).astype(np.float32)
    rows, cols = np.mgrid[0:160, 0:130] / 160
    light = 1 - 0.5 * cols - 0.8 * (rows - 0.5) ** 2  # a photo lit from the left, darker at the top and bottom
    shaded = np.clip(clean * light, 0, 255).astype(np.uint8)
    assert (to_mnist(shaded) - to_mnist(clean.astype(np.uint8))).abs().mean() < 0.03


def test_a_blot_away_from_the_digit_is_dropped(digits):
    clean = paste(digits[0][6], scale=3.0, top=30, left=40)
    blotted = clean.copy()
    blotted[150:154, 3:7] = 0  # a 4x4 dot of ink in a corner of the page
    assert torch.allclose(to_mnist(blotted), to_mnist(clean), atol=1e-5)


def test_background_fits_a_smooth_page_exactly_and_ignores_ink_on_the_border():
    rows, cols = np.mgrid[0:40, 0:50].astype(np.float32)
    page = 0.2 + 0.004 * cols + 0.0002 * (rows - 20) ** 2
    page[0, 10:20] = 0.9  # a stroke touching the top edge
    assert np.abs(background(page) - (0.2 + 0.004 * cols + 0.0002 * (rows - 20) ** 2)).max() < 1e-3


def test_tiny_pictures_are_enlarged_smoothly_before_the_ink_is_found(digits):
    tiny = F.interpolate(digits[0][:1, None].float() / 255, size=(8, 8), mode="area")[0, 0].numpy()
    big = enlarge_tiny(tiny)
    assert big.shape == (32, 32) and abs(big.mean() - tiny.mean()) < 0.02
    assert len(np.unique(np.round(big, 3))) > 4 * len(np.unique(np.round(tiny, 3)))  # shades between the blocks
    assert enlarge_tiny(np.zeros((28, 28), dtype=np.float32)).shape == (28, 28)  # MNIST's size is left as it is


def test_a_tiny_scan_cut_close_to_its_digit_keeps_its_strokes(digits, fast_net):
    X, y = digits
    tiny = []
    for x in X[:100]:
        rows, cols = np.flatnonzero(x.numpy().any(1)), np.flatnonzero(x.numpy().any(0))
        crop = x[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1].float()[None, None] / 255  # no margin: ink on the edge
        small = F.interpolate(crop, size=(10, 10), mode="area")[0, 0]
        tiny.append((255 * (1 - small)).round().to(torch.uint8).numpy())  # dark on light, 10x10 pixels
    readable = torch.stack([to_mnist(t) for t in tiny])
    full_size = torch.stack([to_mnist(x.numpy()) for x in X[:100]])
    ink_kept = (readable > 0).sum((1, 2)).float() / (full_size > 0).sum((1, 2))
    assert ink_kept.median() > 0.7  # the paper is one flat level: strokes on the border are not taken for paper
    assert (predict(fast_net, readable) == y[:100]).float().mean() > 0.8


def test_a_phone_photo_is_read_as_a_viewer_shows_it(tmp_path):
    upright = np.full((60, 40), 255, np.uint8)
    upright[10:50, 8:14] = 0    # an L: a stroke down the left side...
    upright[44:50, 8:32] = 0    # ...and along the bottom
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)   # as a phone held sideways saves it
    exif = Image.Exif()
    exif[0x0112] = 6            # EXIF orientation: turn 90 degrees clockwise to show
    path = tmp_path / "photo.jpg"
    stored.save(path, exif=exif, quality=95)
    seen = as_grayscale(path)
    assert seen.shape == (60, 40) and np.abs(seen - upright / 255).mean() < 0.02
    assert torch.allclose(to_mnist(path), to_mnist(upright), atol=0.1)


def noise(shape) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)


def side_by_side(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    page = np.zeros((40, 80), np.uint8)
    page[6:34, 6:34], page[6:34, 44:72] = a.numpy(), b.numpy()
    return 255 - page


def test_a_picture_without_one_digit_is_refused(digits):
    from digitlab.errors import NoDigitError

    X, y = digits
    three, seven = X[(y == 3).nonzero()[0, 0]], X[(y == 7).nonzero()[0, 0]]
    cases = [(noise((120, 100)), "ink is spread over"), (np.full((120, 100), 128, np.uint8), "blank or almost uniform"),
             (side_by_side(three, seven), "2 pieces of ink side by side")]
    for picture, message in cases:
        with pytest.raises(NoDigitError, match=message):
            to_mnist(picture)
    for i in range(0, len(X), 5):   # while every MNIST digit, enlarged on white paper, is one digit
        to_mnist(255 - np.kron(X[i].numpy(), np.ones((3, 3), np.uint8)))


def test_a_picture_too_small_for_a_digit_is_refused():
    from digitlab.errors import NoDigitError

    dot = np.full((3, 3), 255, np.uint8)
    dot[1, 1] = 0
    with pytest.raises(NoDigitError, match="too small to hold a digit: 3x3 pixels; the smallest digitlab reads is 8"):
        to_mnist(dot)
