// The website's drawing pad: draw with a mouse, a pen or a finger; the strokes are drawn as the notebook's pad
// draws them (a round pen 22 pixels wide on a 280x280 picture, ink bright on black), preprocessed as to_mnist does
// (preprocess.js) and read by the course network with ONNX Runtime Web on the CPU, in this browser.
// The markup is written by book/digitlab_book.py (pad_html). For checks, each pad records in
// window.digitPad.latencies the milliseconds from a stroke's end to the bars showing its prediction.
import * as ort from "./ort.wasm.min.mjs";
import { NoDigitError, grayOfRgba, preprocessSteps } from "./preprocess.js";
import { createSession, probabilities } from "./network.js";

const SIZE = 280;        // digitlab.widgets.PAD_SIZE
const PEN_WIDTH = 22;    // digitlab.widgets.PEN_WIDTH
const HERE = new URL("./", import.meta.url);
const ASK = "Draw a digit in the box.";

ort.env.wasm.wasmPaths = HERE.href;   // the runtime's files, copied into the site next to this one
window.digitPad = { latencies: [], pads: [] };

let session = null;
function network() {
  session ??= createSession(ort, new URL("digit_cnn.onnx", HERE).href);
  return session;
}

class Pad {
  constructor(root) {
    this.root = root;
    this.canvas = root.querySelector(".digit-pad-canvas");
    this.preview = root.querySelector(".digit-pad-preview");
    this.caption = root.querySelector(".digit-pad-caption");
    this.table = root.querySelector(".digit-pad-bars");
    this.rows = [...this.table.querySelectorAll("tbody tr")];
    this.ink = document.createElement("canvas");   // what the network reads: white ink on black, never shown
    this.ink.width = this.ink.height = SIZE;
    this.strokes = [];
    this.drawing = null;       // the pointer drawing now
    this.generation = 0;       // bumped by clear: an update in flight for older strokes is dropped
    this.busy = false;
    this.dirty = false;
    this.strokeEnd = null;     // performance.now() at the last stroke's end, until its prediction shows
    this.listen();
    this.show(null, ASK);
  }

  listen() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.down(e));
    c.addEventListener("pointermove", (e) => this.move(e));
    c.addEventListener("pointerup", (e) => this.up(e));
    c.addEventListener("pointercancel", (e) => this.up(e));
    this.root.querySelector(".digit-pad-clear").addEventListener("click", () => this.clear());
    this.root.querySelector(".digit-pad-undo").addEventListener("click", () => this.undo());
    // The theme's light/dark switch changes the ink's colour on screen.
    new MutationObserver(() => this.redraw()).observe(document.documentElement, { attributes: true });
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.redraw());
  }

  point(e) {
    const box = this.canvas.getBoundingClientRect();
    return [(e.clientX - box.left) * SIZE / box.width, (e.clientY - box.top) * SIZE / box.height];
  }

  down(e) {
    if (e.button !== 0 || this.drawing !== null) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.drawing = e.pointerId;
    this.strokes.push([this.point(e)]);
    this.redraw();
    this.request();
  }

  move(e) {
    if (e.pointerId !== this.drawing) return;
    const stroke = this.strokes[this.strokes.length - 1];
    for (const event of e.getCoalescedEvents?.() ?? [e]) stroke.push(this.point(event));
    this.redraw();
    this.request();
  }

  up(e) {
    if (e.pointerId !== this.drawing) return;
    this.drawing = null;
    this.strokeEnd = performance.now();
    this.request();
  }

  clear() {
    this.strokes = [];
    this.drawing = null;
    this.strokeEnd = null;
    this.generation++;
    this.redraw();
    this.show(null, ASK);
  }

  undo() {
    this.strokes.pop();
    this.generation++;
    this.redraw();
    this.request();
  }

  /** Draw the strokes with a round pen on a canvas context, as digitlab.strokes.draw_strokes does. */
  paint(ctx, colour) {
    ctx.strokeStyle = ctx.fillStyle = colour;
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = ctx.lineJoin = "round";
    for (const stroke of this.strokes) {
      ctx.beginPath();
      ctx.arc(stroke[0][0], stroke[0][1], PEN_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      if (stroke.length > 1) {
        ctx.beginPath();
        ctx.moveTo(...stroke[0]);
        for (const p of stroke.slice(1)) ctx.lineTo(...p);
        ctx.stroke();
      }
    }
  }

  redraw() {
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, SIZE, SIZE);
    this.paint(ctx, getComputedStyle(this.canvas).color);
  }

  /** The strokes as the network's input picture: gray [280 * 280], ink 1 on 0. */
  picture() {
    const ctx = this.ink.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, SIZE, SIZE);
    this.paint(ctx, "#fff");
    return grayOfRgba(ctx.getImageData(0, 0, SIZE, SIZE).data);
  }

  request() {
    this.dirty = true;
    if (!this.busy) this.run();
  }

  async run() {
    this.busy = true;
    try {
      while (this.dirty) {
        this.dirty = false;
        const ended = this.strokeEnd;
        this.strokeEnd = null;
        const shown = await this.update();
        if (ended !== null && shown) window.digitPad.latencies.push(performance.now() - ended);
      }
    } catch (err) {
      this.root.dataset.state = "error";
      this.show(null, `The network could not run here: ${err.message}`);
      console.error(err);
    } finally {
      this.busy = false;
    }
  }

  /** Read what is drawn and show it; false if the strokes changed meanwhile (nothing shown). */
  async update() {
    const generation = this.generation;
    if (this.strokes.length === 0) {
      this.show(null, ASK);
      return true;
    }
    let steps;
    try {
      steps = preprocessSteps(this.picture(), SIZE, SIZE);
    } catch (err) {
      if (!(err instanceof NoDigitError)) throw err;
      this.show(null, err.message);
      return true;
    }
    const [probs] = await probabilities(ort, await network(), steps.centred.data);
    if (generation !== this.generation) return false;
    this.show(probs, "", steps.centred.data);
    return true;
  }

  /** The 28x28 picture (ink dark on white), the caption and the ten bars; a message instead where no digit. */
  show(probs, message, pixels = null) {
    const ctx = this.preview.getContext("2d");
    const image = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = Math.round(255 * (1 - (pixels ? pixels[i] : 0)));
      image.data.set([v, v, v, 255], 4 * i);
    }
    ctx.putImageData(image, 0, 0);
    this.table.hidden = probs === null;
    if (probs === null) {
      this.caption.textContent = message;
      this.root.dataset.prediction = "";
      return;
    }
    const best = probs.indexOf(Math.max(...probs));
    this.caption.textContent = `predicted ${best} (p = ${probs[best].toFixed(3)})`;
    this.root.dataset.prediction = String(best);
    this.rows.forEach((row, d) => {
      row.classList.toggle("best", d === best);
      row.querySelector(".digit-pad-bar span").style.width = `${(100 * probs[d]).toFixed(1)}%`;
      row.querySelector(".digit-pad-value").textContent = probs[d].toFixed(3);
    });
  }
}

for (const root of document.querySelectorAll("[data-digit-pad]")) {
  const pad = new Pad(root);
  window.digitPad.pads.push(pad);
  root.dataset.state = "loading";
  network().then(() => {
    root.dataset.state = "ready";
    root.querySelector(".digit-pad-status").textContent = "";
  }, (err) => {
    root.dataset.state = "error";
    root.querySelector(".digit-pad-status").textContent = `The network could not be loaded: ${err.message}`;
    console.error(err);
  });
}
