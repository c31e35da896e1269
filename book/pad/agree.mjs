// The agreement test's Node side (tests/test_site_pad.py): pictures through the page's preprocessing and network.
// Usage: node agree.mjs PICTURES MODEL OUT. PICTURES: uint32 n, h, w, then n*h*w uint8 pixels. OUT: per picture one
// byte (1: refused as no digit), 784 float32 pixels and 10 float32 probabilities (zeros where refused).
import { readFileSync, writeFileSync } from "node:fs";
import * as ort from "onnxruntime-web";
import { NoDigitError, toMnist } from "./preprocess.js";
import { createSession, probabilities } from "./network.js";

const [pictures, model, out] = process.argv.slice(2);
const bytes = readFileSync(pictures);
const [n, h, w] = new Uint32Array(bytes.buffer, bytes.byteOffset, 3);
const refused = new Uint8Array(n);
const pixels = new Float32Array(n * 784);
const start = performance.now();
for (let i = 0; i < n; i++) {
  const picture = bytes.subarray(12 + i * h * w, 12 + (i + 1) * h * w);
  try {
    pixels.set(toMnist(Float32Array.from(picture, (v) => v / 255), h, w), i * 784);
  } catch (err) {
    if (!(err instanceof NoDigitError)) throw err;
    refused[i] = 1;
  }
}
const preprocessed = performance.now();
const session = await createSession(ort, readFileSync(model));
const probs = await probabilities(ort, session, pixels, n);
const result = new Float32Array(n * 794);
for (let i = 0; i < n; i++) {
  result.set(pixels.subarray(i * 784, (i + 1) * 784), i * 794);
  if (!refused[i]) result.set(probs[i], i * 794 + 784);
}
writeFileSync(out, Buffer.concat([Buffer.from(refused), Buffer.from(result.buffer)]));
const ms = (t) => (t / n).toFixed(2);
console.log(`${n} pictures ${w}x${h}: preprocessing ${ms(preprocessed - start)} ms each, ` +
  `network ${ms(performance.now() - preprocessed)} ms each (ONNX Runtime Web ${ort.env.versions.web}, wasm)`);
