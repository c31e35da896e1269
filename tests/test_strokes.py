import numpy as np

from digitlab.strokes import STROKES, draw_strokes, pen_digit, resample


def test_every_digit_has_ways_to_write_it_inside_the_unit_box():
    assert sorted(STROKES) == list(range(10))
    for digit, variants in STROKES.items():
        assert variants, digit
        for strokes in variants:
            points = np.concatenate(strokes)
            assert points.shape[1] == 2 and points.min() >= -0.02 and points.max() <= 1.02, digit


def test_pen_digits_are_seeded_and_stay_on_the_canvas():
    a = pen_digit(7, np.random.default_rng(3), 280)
    b = pen_digit(7, np.random.default_rng(3), 280)
    assert all(np.array_equal(s, t) for s, t in zip(a, b, strict=True))
    for seed in range(50):
        points = np.concatenate(pen_digit(seed % 10, np.random.default_rng(seed), 280))
        assert points.min() >= -20 and points.max() <= 300  # placed on the 280x280 pad (the wobble may poke out)


def test_resample_spaces_points_as_a_mouse_reports_them():
    line = np.array([[0.0, 0.0], [100.0, 0.0]])
    points = resample(line, 10.0, np.random.default_rng(0))
    gaps = np.diff(points[:, 0])
    assert np.array_equal(points[[0, -1]], line) and np.all(gaps > 0) and np.all(gaps <= 10.0 + 1e-9)
    assert len(resample(line, 500.0, np.random.default_rng(0))) == 2  # a stroke shorter than a step: its two ends


def test_draw_strokes_paints_round_pen_ink_and_smooths_when_scaled():
    stroke = [np.array([[20.0, 50.0], [80.0, 50.0]])]
    sharp = np.asarray(draw_strokes(stroke, 100, 10))
    assert sharp[50, 50] == 255 and sharp[50, 10] == 0 and sharp[30, 50] == 0 and set(np.unique(sharp)) == {0, 255}
    assert sharp[50, 16] == 255  # the round cap reaches past the stroke's end
    smooth = np.asarray(draw_strokes(stroke, 100, 10, scale=4))
    assert 2 < len(np.unique(smooth))  # edges in grey: anti-aliased
    assert abs(int(smooth.astype(int).sum()) - int(sharp.astype(int).sum())) < 0.1 * sharp.sum()
