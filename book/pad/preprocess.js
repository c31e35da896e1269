// The drawing pad's path through digitlab.preprocess.to_mnist, for the browser and for Node (an ES module, no
// dependencies). A picture is gray, row by row, values in [0, 1]; the pad's is 280x280, ink bright on black.
// Each function mirrors the Python function of the same name; tests/test_site_pad.py checks that they agree.
// Pictures under 28 pixels (which to_mnist first enlarges) are not the pad's and are refused.

export const BOX = 20;
export const SIZE = 28;
export const CENTRE = 14;
export const INK_THRESHOLD = 0.25;
export const MIN_CONTRAST = 0.1;
export const MIN_INK_SHARE = 0.1;
export const MIN_INK_PIXELS = 3;
export const MIN_STROKE_SHARE = 0.1;
export const MAX_INK_SHARE = 0.9;
export const SIDE_BY_SIDE_SHARE = 0.35;
export const SIDE_BY_SIDE_HEIGHT = 0.6;
export const GRID = 32;
export const MNIST_MEAN = 0.1307;
export const MNIST_STD = 0.3081;

/** No single digit in the picture (blank, a speck, noise, digits side by side): the pad shows the message. */
export class NoDigitError extends Error {
  constructor(message) {
    super(message);
    this.name = "NoDigitError";
  }
}

/** A picture: `data` (Float32Array, row by row), `h` rows, `w` columns. */
function picture(data, h, w) {
  return { data, h, w };
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function median(values) {
  const s = Float64Array.from(values).sort();
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/** The outermost pixels: top row, bottom row, left column, right column (as preprocess.border). */
export function border(x) {
  const { data, h, w } = x;
  const out = [];
  for (let c = 0; c < w; c++) out.push(data[c]);
  for (let c = 0; c < w; c++) out.push(data[(h - 1) * w + c]);
  for (let r = 0; r < h; r++) out.push(data[r * w]);
  for (let r = 0; r < h; r++) out.push(data[r * w + w - 1]);
  return out;
}

/** Ink bright, like MNIST: a light page (by the median of its border) is flipped. */
export function inkBright(x) {
  if (median(border(x)) <= 0.5) return x;
  const flipped = new Float32Array(x.data.length);
  for (let i = 0; i < flipped.length; i++) flipped[i] = 1 - x.data[i];
  return picture(flipped, x.h, x.w);
}

function linspace(n) {
  return Array.from({ length: n }, (_, i) => (n === 1 ? -1 : i === n - 1 ? 1 : -1 + (2 * i) / (n - 1)));
}

/** Least squares by the normal equations (Gaussian elimination, partial pivoting); a lost column gets 0. */
function leastSquares(rows, b) {
  const k = rows[0].length;
  const m = Array.from({ length: k }, () => new Float64Array(k + 1));
  rows.forEach((row, n) => {
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) m[i][j] += row[i] * row[j];
      m[i][k] += row[i] * b[n];
    }
  });
  const scale = Math.max(...m.map((r, i) => Math.abs(r[i])), 1e-30);
  const coef = new Float64Array(k);
  const pivots = [];
  for (let col = 0, r = 0; col < k && r < k; col++) {
    let best = r;
    for (let i = r + 1; i < k; i++) if (Math.abs(m[i][col]) > Math.abs(m[best][col])) best = i;
    if (Math.abs(m[best][col]) < 1e-10 * scale) continue;
    [m[r], m[best]] = [m[best], m[r]];
    for (let i = 0; i < k; i++) {
      if (i === r) continue;
      const f = m[i][col] / m[r][col];
      for (let j = col; j <= k; j++) m[i][j] -= f * m[r][j];
    }
    pivots.push([r, col]);
    r++;
  }
  for (const [r, col] of pivots) coef[col] = m[r][k] / m[r][col];
  return coef;
}

/** The paper's brightness: a quadratic surface fitted to the border, refitted without ink that touches it. */
export function background(x, rounds = 3) {
  const { h, w } = x;
  const u = linspace(w).map(Math.fround);
  const v = linspace(h).map(Math.fround);
  const eu = [...u, ...u, ...v.map(() => -1), ...v.map(() => 1)];
  const ev = [...u.map(() => -1), ...u.map(() => 1), ...v, ...v];
  const b = border(x);
  const A = eu.map((a, i) => [1, a, ev[i], a * a, ev[i] * ev[i], a * ev[i]]);
  let paper = b.map(() => true);
  let coef;
  for (let round = 0; round < rounds; round++) {
    const idx = paper.flatMap((p, i) => (p ? [i] : []));
    coef = leastSquares(idx.map((i) => A[i]), idx.map((i) => b[i])).map(Math.fround);
    const residual = A.map((row, i) => b[i] - row.reduce((s, a, j) => s + a * coef[j], 0));
    const spread = 1.4826 * median(idx.map((i) => Math.abs(residual[i]))) + 0.01;
    const now = residual.map((r) => r < 3 * spread + 0.01);
    const count = now.filter(Boolean).length;
    if (now.every((p, i) => p === paper[i]) || count < 6) break;
    paper = now;
  }
  const [c0, cu, cv, cuu, cvv, cuv] = coef;
  const out = new Float32Array(h * w);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      out[r * w + c] = c0 + cu * u[c] + cuu * u[c] * u[c] + (cv * v[r] + cvv * v[r] * v[r]) + cuv * v[r] * u[c];
    }
  }
  return out;
}

/** How far each pixel rises above the paper, as a share of the strongest stroke; faint specks are 0. */
export function strength(x, paper) {
  const n = x.data.length;
  const above = new Float32Array(n);
  let contrast = -Infinity;
  for (let i = 0; i < n; i++) {
    above[i] = x.data[i] - paper[i];
    if (above[i] > contrast) contrast = above[i];
  }
  if (contrast < MIN_CONTRAST) {
    throw new NoDigitError(`No digit found: the picture is blank or almost uniform (ink-to-background contrast ` +
      `${contrast.toFixed(2)}, needs at least ${MIN_CONTRAST}). Draw a darker, thicker digit.`);
  }
  const s = new Float32Array(n);   // float32, as in Python, so that the threshold decides alike
  for (let i = 0; i < n; i++) {
    const v = Math.min(Math.max(above[i] / contrast, 0), 1);
    s[i] = v;
    if (s[i] < INK_THRESHOLD - 1e-6) s[i] = 0;
  }
  return picture(s, x.h, x.w);
}

/** Connected pieces of ink on a grid of at most GRID x GRID cells (8-neighbours), as preprocess.pieces. */
export function pieces(levels, grid = GRID) {
  const { data, h, w } = levels;
  const cell = Math.ceil(Math.max(h, w) / grid);
  const gh = Math.ceil(h / cell);
  const gw = Math.ceil(w / cell);
  const mass = new Float64Array(gh * gw);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) mass[Math.floor(r / cell) * gw + Math.floor(c / cell)] += data[r * w + c];
  }
  const label = new Int32Array(gh * gw);   // 0: no ink; else the piece's number, from 1
  const pieceMass = [0];
  for (let start = 0; start < gh * gw; start++) {
    if (mass[start] <= 0 || label[start]) continue;
    const k = pieceMass.length;
    let total = 0;
    const stack = [start];
    label[start] = k;
    while (stack.length) {
      const i = stack.pop();
      total += mass[i];
      const gr = Math.floor(i / gw);
      const gc = i % gw;
      for (let dr = -1; dr <= 1; dr++) {
        for (let dc = -1; dc <= 1; dc++) {
          const nr = gr + dr;
          const nc = gc + dc;
          if (nr < 0 || nc < 0 || nr >= gh || nc >= gw) continue;
          const j = nr * gw + nc;
          if (mass[j] > 0 && !label[j]) {
            label[j] = k;
            stack.push(j);
          }
        }
      }
    }
    pieceMass.push(total);
  }
  return { label, pieceMass, cell, gh, gw };
}

/** Keep the pieces of ink that hold at least MIN_STROKE_SHARE of the largest one's ink. */
export function mainStrokes(levels, grid = GRID) {
  const { h, w } = levels;
  const { label, pieceMass, cell, gw } = pieces(levels, grid);
  const largest = Math.max(...pieceMass);
  const out = new Float32Array(h * w);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const k = label[Math.floor(r / cell) * gw + Math.floor(c / cell)];
      if (k && pieceMass[k] >= MIN_STROKE_SHARE * largest) out[r * w + c] = levels.data[r * w + c];
    }
  }
  return picture(out, h, w);
}

/** Refuse ink over most of the picture, or large pieces of ink side by side (two digits or more). */
export function checkOneDigit(levels) {
  const { label, pieceMass, gw } = pieces(levels);
  const share = label.reduce((n, k) => n + (k > 0), 0) / label.length;
  if (share > MAX_INK_SHARE) {
    throw new NoDigitError(`No digit found: ink is spread over ${Math.round(100 * share)}% of the picture.`);
  }
  const largest = Math.max(...pieceMass);
  const extent = (k, byRow) => {
    let first = Infinity;
    let last = -Infinity;
    for (let i = 0; i < label.length; i++) {
      if (label[i] !== k) continue;
      const at = byRow ? Math.floor(i / gw) : i % gw;
      first = Math.min(first, at);
      last = Math.max(last, at);
    }
    return [first, last];
  };
  const big = pieceMass.flatMap((m, k) => (k > 0 && m >= SIDE_BY_SIDE_SHARE * largest ? [k] : []));
  const rows = big.map((k) => extent(k, true));
  const height = Math.max(...rows.map(([a, b]) => b - a + 1));
  const tall = big.filter((_, i) => rows[i][1] - rows[i][0] + 1 >= SIDE_BY_SIDE_HEIGHT * height);
  const spans = tall.map((k) => extent(k, false)).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let reach = spans[0][1];
  for (const [first, last] of spans.slice(1)) {
    if (first > reach + 1) {
      throw new NoDigitError(`${spans.length} pieces of ink side by side, each about as large as a digit: ` +
        "the pad reads one digit at a time.");
    }
    reach = Math.max(reach, last);
  }
}

/** The smallest rectangle that holds every ink pixel; a speck of ink is no digit. */
export function cropToInk(levels) {
  const { data, h, w } = levels;
  let r0 = h, r1 = -1, c0 = w, c1 = -1;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      if (data[r * w + c] !== 0) {
        r0 = Math.min(r0, r); r1 = Math.max(r1, r); c0 = Math.min(c0, c); c1 = Math.max(c1, c);
      }
    }
  }
  const size = Math.max(r1 - r0, c1 - c0) + 1;
  if (size < Math.max(MIN_INK_PIXELS, MIN_INK_SHARE * Math.max(h, w))) {
    throw new NoDigitError(`No digit found: the only ink is a speck of ${r1 - r0 + 1}x${c1 - c0 + 1} pixels. ` +
      "Draw the digit larger.");
  }
  const ch = r1 - r0 + 1;
  const cw = c1 - c0 + 1;
  const out = new Float32Array(ch * cw);
  for (let r = 0; r < ch; r++) out.set(data.subarray((r0 + r) * w + c0, (r0 + r) * w + c0 + cw), r * cw);
  return picture(out, ch, cw);
}

/** Weights of one output pixel of an antialiased bilinear resize (PyTorch's antialias=True, PIL's filter). */
function resizeWeights(inSize, outSize) {
  const scale = inSize / outSize;
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? 1 / scale : 1;
  return Array.from({ length: outSize }, (_, i) => {
    const centre = scale * (i + 0.5);
    const xmin = Math.max(Math.trunc(centre - support + 0.5), 0);
    const xsize = Math.min(Math.trunc(centre + support + 0.5), inSize) - xmin;
    let weights = Array.from({ length: Math.max(xsize, 0) }, (_, j) =>
      Math.max(0, 1 - Math.abs((j + xmin - centre + 0.5) * invscale)));
    const total = weights.reduce((a, b) => a + b, 0);
    if (total !== 0) weights = weights.map((x) => x / total);
    return { xmin, weights };
  });
}

/** Resize as torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False): columns,
 * then rows. */
export function resizeBilinearAA(x, oh, ow) {
  const { data, h, w } = x;
  const across = new Float64Array(h * ow);
  resizeWeights(w, ow).forEach(({ xmin, weights }, oc) => {
    for (let r = 0; r < h; r++) {
      let s = 0;
      for (let j = 0; j < weights.length; j++) s += weights[j] * data[r * w + xmin + j];
      across[r * ow + oc] = Math.fround(s);
    }
  });
  const out = new Float32Array(oh * ow);
  resizeWeights(h, oh).forEach(({ xmin, weights }, or) => {
    for (let c = 0; c < ow; c++) {
      let s = 0;
      for (let j = 0; j < weights.length; j++) s += weights[j] * across[(xmin + j) * ow + c];
      out[or * ow + c] = s;
    }
  });
  return picture(out, oh, ow);
}

/** Scale so that the longer side is `box` pixels, keeping the aspect ratio; the strongest ink becomes 1. */
export function fitBox(digit, box = BOX) {
  const scale = box / Math.max(digit.h, digit.w);
  const oh = Math.max(1, roundHalfEven(digit.h * scale));
  const ow = Math.max(1, roundHalfEven(digit.w * scale));
  const resized = resizeBilinearAA(digit, oh, ow).data.map((v) => Math.min(Math.max(v, 0), 1));
  let top = 0;
  for (const v of resized) top = Math.max(top, v);
  return picture(resized.map((v) => v / top), oh, ow);
}

/** (row, column) of the ink's centre of mass. */
export function centreOfMass(digit) {
  const { data, h, w } = digit;
  let total = 0, row = 0, col = 0;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const v = data[r * w + c];
      total += v; row += r * v; col += c * v;
    }
  }
  return [row / total, col / total];
}

/** Paste the digit into a SIZE x SIZE frame with its centre of mass at the frame's centre (whole pixels). */
export function centreInFrame(digit, size = SIZE) {
  const { data, h, w } = digit;
  const [cy, cx] = centreOfMass(digit);
  const top = Math.min(Math.max(roundHalfEven(CENTRE - cy), 0), size - h);
  const left = Math.min(Math.max(roundHalfEven(CENTRE - cx), 0), size - w);
  const frame = new Float32Array(size * size);
  for (let r = 0; r < h; r++) frame.set(data.subarray(r * w, r * w + w), (top + r) * size + left);
  return picture(frame, size, size);
}

/** Every stage of the pad's to_mnist: ink, cropped, scaled (20x20 box), centred (28x28). Throws NoDigitError. */
export function preprocessSteps(gray, h, w) {
  if (Math.max(h, w) < SIZE) throw new NoDigitError(`A ${w}x${h} picture: the pad reads pictures of 28 pixels or more.`);
  const clipped = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) clipped[i] = Math.min(Math.max(gray[i], 0), 1);
  const x = inkBright(picture(clipped, h, w));
  const found = mainStrokes(strength(x, background(x)));
  checkOneDigit(found);
  const cropped = cropToInk(found);
  const scaled = fitBox(cropped);
  return { ink: found, cropped, scaled, centred: centreInFrame(scaled) };
}

/** A gray picture -> the 28x28 MNIST-style image (Float32Array of 784, ink 1, paper 0), as to_mnist. */
export function toMnist(gray, h, w) {
  return preprocessSteps(gray, h, w).centred.data;
}

/** The network's input: pixels normalised as in training ((x - mean) / std), as digitlab.normalize. */
export function normalise(pixels) {
  return Float32Array.from(pixels, (v) => (v - MNIST_MEAN) / MNIST_STD);
}

/** Class probabilities from logits (softmax). */
export function softmax(logits) {
  const top = Math.max(...logits);
  const e = Array.from(logits, (z) => Math.exp(z - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

/** The gray picture of an RGBA canvas image (ImageData's data): 0.299 R + 0.587 G + 0.114 B, in [0, 1]. */
export function grayOfRgba(rgba) {
  const gray = new Float32Array(rgba.length / 4);
  for (let i = 0; i < gray.length; i++) {
    gray[i] = (0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255;
  }
  return gray;
}
