// The course network in ONNX Runtime Web: one session, single-threaded (no cross-origin isolation needed), the
// same code in the page and in the Node agreement test. `ort` is the onnxruntime-web module.
import { normalise, softmax } from "./preprocess.js";

/** An inference session on the wasm (CPU) backend; `model` is a URL, a path (Node) or the file's bytes. */
export async function createSession(ort, model) {
  ort.env.wasm.numThreads = 1;
  return ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
}

/** Class probabilities of n 28x28 images (pixels: Float32Array of n * 784, ink 1, paper 0), one array each. */
export async function probabilities(ort, session, pixels, n = 1) {
  const input = new ort.Tensor("float32", normalise(pixels), [n, 1, 28, 28]);
  const { logits } = await session.run({ image: input });
  return Array.from({ length: n }, (_, i) => softmax(logits.data.subarray(10 * i, 10 * i + 10)));
}
