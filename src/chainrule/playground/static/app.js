// chainrule playground: the page. Plain JavaScript, no framework, nothing from the internet.
// Every number drawn here comes from the JSON API under /api/ (docs/playground.md): the page
// computes no derivative and no loss of its own; it only draws what the engine answered.
"use strict";

// ---- small helpers: numbers, SVG, scales -------------------------------------------------------

const SVGNS = "http://www.w3.org/2000/svg";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return String(Number(v.toFixed(digits)));
}

// A number as it reads inside a formula: negative ones in brackets.
function signed(v) {
  return typeof v === "number" && v < 0 ? `(${fmt(v)})` : fmt(v);
}

function el(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

function html(tag, attrs = {}, parent = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "html") node.innerHTML = v;
    else node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

// A linear map from [d0, d1] to [r0, r1], with its inverse.
function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  const f = (v) => r0 + ((v - d0) / span) * (r1 - r0);
  f.invert = (p) => d0 + ((p - r0) / (r1 - r0)) * span;
  return f;
}

function extent(values, pad = 0.08) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

function ticks(lo, hi, count = 5) {
  const step0 = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) out.push(Number(t.toFixed(10)));
  return out;
}

function path(points) {
  let d = "";
  let pen = false;
  for (const [x, y] of points) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) { pen = false; continue; }
    d += (pen ? "L" : "M") + x.toFixed(2) + "," + y.toFixed(2);
    pen = true;
  }
  return d;
}

// Axes with ticks inside a plot box {left, top, width, height}.
function axes(svg, box, xs, ys, xlabel, ylabel, ylog = false) {
  const g = el("g", { class: "axes" }, svg);
  el("rect", { x: box.left, y: box.top, width: box.width, height: box.height, fill: "#fff", stroke: "#c9ced6" }, g);
  const [x0, x1] = [xs.invert(box.left), xs.invert(box.left + box.width)];
  const [y0, y1] = [ys.invert(box.top + box.height), ys.invert(box.top)];
  const xt = ticks(Math.min(x0, x1), Math.max(x0, x1));
  for (const t of xlabel === "iteration" ? xt.filter(Number.isInteger) : xt) {   // whole iterations only
    el("line", { x1: xs(t), x2: xs(t), y1: box.top, y2: box.top + box.height, stroke: "#f0f2f5" }, g);
    el("text", { x: xs(t), y: box.top + box.height + 13, "font-size": 10, "text-anchor": "middle", fill: "#5c6675", text: fmt(t, 3) }, g);
  }
  for (const t of ticks(Math.min(y0, y1), Math.max(y0, y1))) {
    el("line", { x1: box.left, x2: box.left + box.width, y1: ys(t), y2: ys(t), stroke: "#f0f2f5" }, g);
    el("text", { x: box.left - 4, y: ys(t) + 3, "font-size": 10, "text-anchor": "end", fill: "#5c6675", text: ylog ? (Math.abs(t) >= 4 ? `1e${t}` : fmt(10 ** t, 3)) : fmt(t, 3) }, g);
  }
  if (xlabel) el("text", { x: box.left + box.width / 2, y: box.top + box.height + 27, "font-size": 11, "text-anchor": "middle", fill: "#1d2430", text: xlabel }, g);
  if (ylabel) el("text", { x: 12, y: box.top + box.height / 2, "font-size": 11, "text-anchor": "middle", fill: "#1d2430", transform: `rotate(-90 12 ${box.top + box.height / 2})`, text: ylabel }, g);
  return g;
}

// The point of an SVG in its own coordinates (viewBox) under a mouse event.
function svgPoint(svg, event) {
  const pt = svg.createSVGPoint();
  pt.x = event.clientX;
  pt.y = event.clientY;
  return pt.matrixTransform(svg.getScreenCTM().inverse());
}

// ---- exports: SVG, PNG, GIF, files ---------------------------------------------------------------

function download(name, blob) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function svgText(svg) {
  const copy = svg.cloneNode(true);
  copy.setAttribute("xmlns", SVGNS);
  const [, , w, h] = svg.getAttribute("viewBox").split(/[ ,]+/).map(Number);
  copy.setAttribute("width", w);
  copy.setAttribute("height", h);
  copy.removeAttribute("style");
  // The page's stylesheet does not travel with the file: only the fonts are needed.
  el("style", { text: "text{font-family:DejaVu Sans,sans-serif}.mono{font-family:DejaVu Sans Mono,monospace}" }, copy);
  return new XMLSerializer().serializeToString(copy);
}

function svgToCanvas(svg, scaleBy = 2) {
  return new Promise((resolve, reject) => {
    const vb = svg.viewBox.baseVal;
    const img = new Image();
    img.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(vb.width * scaleBy);
      canvas.height = Math.round(vb.height * scaleBy);
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      resolve(canvas);
    };
    img.onerror = () => reject(new Error("the picture could not be drawn"));
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svgText(svg));
  });
}

// A GIF89a encoder of our own: a fixed 256-colour palette (6x6x6 cube + 40 greys), LZW codes.
const GIF_PALETTE = (() => {
  const p = [];
  for (let r = 0; r < 6; r++) for (let g = 0; g < 6; g++) for (let b = 0; b < 6; b++) p.push([r * 51, g * 51, b * 51]);
  for (let i = 0; i < 40; i++) { const v = Math.round((i * 255) / 39); p.push([v, v, v]); }
  return p;
})();

function gifIndex(r, g, b) {
  const cube = Math.round(r / 51) * 36 + Math.round(g / 51) * 6 + Math.round(b / 51);
  const [cr, cg, cb] = GIF_PALETTE[cube];
  const grey = Math.round(((r + g + b) / 3 / 255) * 39);
  const gv = GIF_PALETTE[216 + grey][0];
  const dc = (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2;
  const dg = (r - gv) ** 2 + (g - gv) ** 2 + (b - gv) ** 2;
  return dg < dc ? 216 + grey : cube;
}

function lzw(indices) {
  const out = [];
  let cur = 0;
  let nbits = 0;
  const emit = (code, size) => {
    cur |= code << nbits;
    nbits += size;
    while (nbits >= 8) { out.push(cur & 255); cur >>>= 8; nbits -= 8; }
  };
  const clearCode = 256;
  const end = 257;
  let dict = new Map();
  let next = 258;
  let size = 9;
  emit(clearCode, size);
  let prefix = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const k = indices[i];
    const key = prefix * 256 + k;
    const hit = dict.get(key);
    if (hit !== undefined) { prefix = hit; continue; }
    emit(prefix, size);
    if (next < 4096) {
      dict.set(key, next++);
      if (next > 1 << size && size < 12) size++;
    } else {
      emit(clearCode, size);
      dict = new Map();
      next = 258;
      size = 9;
    }
    prefix = k;
  }
  emit(prefix, size);
  emit(end, size);
  if (nbits > 0) out.push(cur & 255);
  return out;
}

function encodeGif(frames, width, height, delayCs = 20) {
  const bytes = [];
  const word = (v) => bytes.push(v & 255, (v >> 8) & 255);
  for (const c of "GIF89a") bytes.push(c.charCodeAt(0));
  word(width); word(height);
  bytes.push(0xf7, 0, 0);
  for (const [r, g, b] of GIF_PALETTE) bytes.push(r, g, b);
  bytes.push(0x21, 0xff, 11, ..."NETSCAPE2.0".split("").map((c) => c.charCodeAt(0)), 3, 1, 0, 0, 0);
  for (const rgba of frames) {
    bytes.push(0x21, 0xf9, 4, 0, delayCs & 255, delayCs >> 8, 0, 0);
    bytes.push(0x2c); word(0); word(0); word(width); word(height); bytes.push(0);
    const idx = new Array(width * height);
    for (let i = 0; i < idx.length; i++) idx[i] = gifIndex(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]);
    bytes.push(8);
    const data = lzw(idx);
    for (let i = 0; i < data.length; i += 255) {
      const block = data.slice(i, i + 255);
      bytes.push(block.length, ...block);
    }
    bytes.push(0);
  }
  bytes.push(0x3b);
  return new Uint8Array(bytes);
}
// ---- talking to the server ----------------------------------------------------------------------

const SESSION = (() => {
  let id = sessionStorage.getItem("chainrule-session");
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = "tab-" + Math.random().toString(36).slice(2, 12);
    sessionStorage.setItem("chainrule-session", id);
  }
  return id;
})();

let busy = 1;   // the HTML starts with data-busy="1": the first state is on its way
function setBusy(delta) {
  busy += delta;
  document.body.dataset.busy = String(busy);
}

class ApiError extends Error {}

async function api(method, path, body = null, raw = false) {
  setBusy(1);
  try {
    const init = { method, headers: { "X-Session": SESSION } };
    if (body instanceof FormData) init.body = body;
    else if (body !== null) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError("the playground server does not answer (is `chainrule playground` still running?)");
    }
    if (!res.ok) {
      let line = `${res.status} ${res.statusText}`;
      try { line = (await res.json()).error || line; } catch (e) { /* not JSON: keep the status line */ }
      throw new ApiError(line);
    }
    return raw ? res : await res.json();
  } finally {
    setBusy(-1);
  }
}

// ---- the page's own state (what to show; the run itself lives on the server) --------------------

const UI = {
  state: null,
  version: 0,            // bumps with every state the server sends: late view answers are dropped
  curveKey: null,
  landscapeY: null,
  tab: "curve",
  level: null,
  tableKey: null,
  lit: null,             // the parameter whose chain-rule paths are lit
  backward: -1,          // how far the backward-step control has gone (-1: not started)
  graph: null,           // the last /api/graph answer
  opsGraph: null,        // the ops-level graph, fetched on demand for the formulas on hover
  lessonFile: null,
  playing: false,
  frames: [],            // the squiggle after each iteration, for the GIF
  lastHash: null,
  lastIteration: -1,
};

let queue = Promise.resolve();

// Actions run one after another, in the order the learner made them.
function act(action) {
  const run = queue.then(() => doAction(action));
  queue = run.catch(() => {});
  return run;
}

async function doAction(action) {
  try {
    const state = await api("POST", "/api/action", action);
    showMessage("");
    await applyState(state);
    return state;
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showMessage(e.message, "error");
    // Nothing changed on the server: the controls go back to what the state says.
    if (document.activeElement && document.activeElement.blur) document.activeElement.blur();
    if (UI.state) { drawControls(UI.state); drawParams(UI.state); }
    return null;
  }
}

function showMessage(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = text ? kind : "";
}

async function applyState(state, writeLink = true) {
  const previous = UI.state;
  UI.state = state;
  UI.version += 1;
  if (previous && structureChanged(previous, state)) { UI.backward = -1; UI.lit = null; UI.litNodes = null; $("#explain").textContent = ""; }
  pickKeys(state);
  drawControls(state);
  drawParams(state);
  drawStats(state);
  drawTable(state);
  drawTrainingChart(state);
  drawRuns(state);
  await Promise.all([drawLesson(state), refreshViews(), writeLink ? writeHash() : null]);
  if (state.iteration !== UI.lastIteration) captureFrame(state);
  UI.lastIteration = state.iteration;
}

function structureChanged(a, b) {
  return a.parameters.map((p) => p.name).join() !== b.parameters.map((p) => p.name).join();
}

function keys(state) {
  return state.elements.map((e) => e.key);
}

function pickKeys(state) {
  const all = keys(state);
  const trained = state.elements.filter((e) => e.trained).map((e) => e.key);
  if (!all.includes(UI.curveKey)) UI.curveKey = trained[0] || all[all.length - 1];
  if (!all.includes(UI.landscapeY) || UI.landscapeY === UI.curveKey) {
    UI.landscapeY = trained.find((k) => k !== UI.curveKey) || all.find((k) => k !== UI.curveKey);
  }
  if (!all.includes(UI.tableKey)) UI.tableKey = trained[0] || all[0];
  const lesson = state.network.kind === "lesson";
  if (!UI.level || (!lesson && UI.level === "neuron")) UI.level = lesson ? "neuron" : "ops";
}

function element(key) {
  return UI.state.elements.find((e) => e.key === key);
}

// ---- the controls -------------------------------------------------------------------------------

const TRAIN_PRESETS = { "b3": ["b3"], "w3,w4,b3": ["w3", "w4", "b3"] };

function trainPreset(state) {
  const names = state.parameters.map((p) => p.name);
  const train = state.settings.train;
  if (train.length === names.length) return "all";
  for (const [value, list] of Object.entries(TRAIN_PRESETS)) {
    if (list.length === train.length && list.every((n) => train.includes(n))) return value;
  }
  return "custom";
}

function setSelect(select, options, value) {
  const want = options.map(([v]) => v).join("|");
  if (select.dataset.options !== want) {
    clear(select);
    for (const [v, label] of options) html("option", { value: v, text: label }, select);
    select.dataset.options = want;
  }
  if (document.activeElement !== select) select.value = value;
}

function setInput(input, value) {
  if (document.activeElement !== input) input.value = value;
}

function drawControls(state) {
  const s = state.settings;
  setInput($("#lr"), s.lr);
  setInput($("#tol"), s.tol);
  setInput($("#max-iter"), s.max_iter);
  setInput($("#hidden"), s.hidden.join(","));
  $("#optimizer").value = s.optimizer;
  setInput($("#momentum"), s.momentum);
  setInput($("#beta1"), s.beta1);
  setInput($("#beta2"), s.beta2);
  $(".opt-momentum").style.display = s.optimizer === "momentum" ? "" : "none";
  $(".opt-adam").style.display = s.optimizer === "adam" ? "" : "none";
  $("#loss").value = s.loss;
  const acts = ["softplus", "relu", "sigmoid", "tanh"];
  setSelect($("#activation"), acts.map((a) => [a, a]), s.activation);
  const lessonNet = state.network.kind === "lesson";
  for (const opt of $$("#train-preset option")) {
    opt.disabled = !lessonNet && (opt.value === "b3" || opt.value === "w3,w4,b3");
  }
  $("#train-preset").value = trainPreset(state);
  const seed = $("#seed");
  seed.textContent = s.seed;
  seed.dataset.value = s.seed;
  const els = keys(state).map((k) => [k, k]);
  setSelect($("#curve-param"), els, UI.curveKey);
  setSelect($("#landscape-y"), els, UI.landscapeY);
  setSelect($("#table-param"), state.elements.filter((e) => e.trained || e.key === UI.tableKey).map((e) => [e.key, e.key]), UI.tableKey);
  const levels = lessonNet ? [["neuron", "the lessons' nodes"], ["ops", "every op"]] : [["ops", "every op"]];
  setSelect($("#graph-level"), levels, UI.level);
  const hidden = new Set(state.hidden_controls || []);
  for (const node of $$("[data-needs]")) node.style.display = hidden.has(node.dataset.needs) ? "none" : "";
  const stopped = state.stop_reason !== null;
  for (const a of ["step", "step10", "run"]) $(`[data-action="${a}"]`).disabled = stopped;
  $("#loss-name").textContent = state.loss_name;
  const src = state.data.source;
  const preset = src.startsWith("preset:") ? src.slice(7) : "";
  if ($("#preset").options.length) $("#preset").value = preset;
  $("#server-state").textContent = `${state.network.kind === "lesson" ? "the lessons' network" : "mlp " + state.network.sizes.join("-")} · ${state.data.rows} points (${src})`;
}

function bindControls() {
  $('[data-action="step"]').addEventListener("click", () => act({ action: "step", n: 1 }));
  $('[data-action="step10"]').addEventListener("click", () => act({ action: "step", n: 10 }));
  $('[data-action="run"]').addEventListener("click", () => act({ action: "run" }));
  $('[data-action="reset"]').addEventListener("click", () => { stopPlay(); UI.frames = []; act({ action: "reset" }); });
  $('[data-action="randomize"]').addEventListener("click", () => { stopPlay(); UI.frames = []; act({ action: "new_start" }); });
  $('[data-action="play"]').addEventListener("click", () => (UI.playing ? stopPlay() : play()));
  const live = (sel, name, parse) => $(sel).addEventListener("change", (ev) => {
    const value = parse(ev.target.value);
    if (value === null) return;
    act({ action: "settings", [name]: value });
  });
  const number = (v) => {
    const n = Number(v);
    if (v === "" || !Number.isFinite(n)) { showMessage(`not a number: '${v}'`); return null; }
    return n;
  };
  live("#lr", "lr", number);
  live("#tol", "tol", number);
  live("#max-iter", "max_iter", number);
  live("#momentum", "momentum", number);
  live("#beta1", "beta1", number);
  live("#beta2", "beta2", number);
  live("#optimizer", "optimizer", (v) => v);
  live("#loss", "loss", (v) => v);
  live("#activation", "activation", (v) => v);
  live("#hidden", "hidden", (v) => {
    const parts = v.split(/[ ,]+/).filter(Boolean).map(Number);
    if (!parts.length || parts.some((n) => !Number.isInteger(n) || n < 1)) {
      showMessage(`hidden: give the units of each hidden layer as whole numbers, e.g. 2 or 4,3; got '${v}'`);
      return null;
    }
    return parts;
  });
  $("#train-preset").addEventListener("change", (ev) => {
    const v = ev.target.value;
    if (v === "custom") { showMessage("tick the parameters to train in the list under the network", "info"); return; }
    const train = v === "all" ? UI.state.parameters.map((p) => p.name) : TRAIN_PRESETS[v];
    act({ action: "settings", train });
  });
  $("#curve-param").addEventListener("change", (ev) => { UI.curveKey = ev.target.value; refreshViews(); writeHash(); });
  $("#landscape-y").addEventListener("change", (ev) => { UI.landscapeY = ev.target.value; refreshViews(); writeHash(); });
  $("#table-param").addEventListener("change", (ev) => { UI.tableKey = ev.target.value; drawTable(UI.state); writeHash(); });
  $("#graph-level").addEventListener("change", (ev) => { UI.level = ev.target.value; UI.backward = -1; refreshViews(); writeHash(); });
  for (const b of $$("[data-tab]")) b.addEventListener("click", () => { UI.tab = b.dataset.tab; refreshViews(); writeHash(); });
  $("#preset").addEventListener("change", loadPreset);
  $("#noise").addEventListener("change", loadPreset);
  $("#upload").addEventListener("change", upload);
  $('[data-action="backward-start"]').addEventListener("click", () => { UI.backward = 0; drawGraph(); });
  $('[data-action="backward-step"]').addEventListener("click", () => {
    const n = UI.graph ? UI.graph.steps.length : 0;
    UI.backward = Math.min(UI.backward + 1, n - 1);
    drawGraph();
  });
  $('[data-action="backward-all"]').addEventListener("click", () => { UI.backward = -1; drawGraph(); });
  $('[data-action="restarts"]').addEventListener("click", () => {
    const n = Number($("#restarts-n").value);
    act({ action: "restarts", n });
  });
  $('[data-action="gif"]').addEventListener("click", exportGif);
  $('[data-action="model"]').addEventListener("click", () => downloadFrom("/api/export/model", "playground-model.json"));
  $('[data-action="history"]').addEventListener("click", () => downloadFrom("/api/export/history.csv", "playground-history.csv"));
  $('[data-action="code"]').addEventListener("click", copyCode);
  $('[data-action="copy-link"]').addEventListener("click", async () => {
    await writeHash();
    try { await navigator.clipboard.writeText(location.href); showMessage("the link is on the clipboard: it opens this very state", "info"); } catch (e) { showMessage(`copy this address: ${location.href}`, "info"); }
  });
  for (const b of $$("[data-export]")) b.addEventListener("click", () => exportView(b.dataset.export, b.dataset.format));
  $('[data-action="lesson-next"]').addEventListener("click", () => lessonStep(1));
  $('[data-action="lesson-prev"]').addEventListener("click", () => lessonStep(-1));
  $('[data-action="leave-lesson"]').addEventListener("click", () => act({ action: "leave_lesson" }));
  window.addEventListener("hashchange", () => { if (location.hash !== UI.lastHash) openFromHash(); });
}

// Play: one step, a pause, again, until the stop rule ends the run or the learner pauses.
async function play() {
  UI.playing = true;
  $('[data-action="play"]').textContent = "Pause";
  while (UI.playing) {
    const state = await act({ action: "step", n: 1 });
    if (!state || state.stop_reason !== null) break;
    const perSecond = Number($("#speed").value) || 5;
    await new Promise((r) => setTimeout(r, 1000 / perSecond));
  }
  stopPlay();
}

function stopPlay() {
  UI.playing = false;
  $('[data-action="play"]').textContent = "Play";
}

// ---- the parameters: one row each, the stable test hooks ----------------------------------------

const MAX_ROWS = 120;

function drawParams(state) {
  const box = $("#params");
  const els = state.elements.slice(0, MAX_ROWS);
  const sig = els.map((e) => e.key).join("|");
  if (box.dataset.keys !== sig) {
    clear(box);
    for (const e of els) box.appendChild(paramRow(e));
    if (state.elements.length > MAX_ROWS) {
      html("div", { class: "hint", text: `and ${state.elements.length - MAX_ROWS} more numbers (drag them on the network)` }, box);
    }
    box.dataset.keys = sig;
    box.classList.toggle("long-keys", els.some((e) => e.key.length > 3));
  }
  for (const e of els) {
    const row = box.querySelector(`[data-key="${CSS.escape(e.key)}"]`);
    const value = row.querySelector("[data-param]");
    value.dataset.value = String(e.value);
    setInput(row.querySelector("input[type=number]"), e.value === null ? "" : Number(e.value.toPrecision(6)));
    const grad = row.querySelector(".grad");
    grad.textContent = `∂ ${fmt(e.gradient, 3)}`;
    grad.title = `d${state.loss_name}/d${e.key} = ${e.gradient}`;
    const tick = row.querySelector("input[type=checkbox]");
    tick.checked = state.settings.train.includes(e.name);
    tick.style.visibility = (state.hidden_controls || []).includes("train") ? "hidden" : "";
  }
}

function paramRow(e) {
  const row = html("div", { class: "param-row", "data-key": e.key });
  const name = html("span", { class: "name", text: e.key, title: "click: its chain rule; hover: where it is" }, row);
  name.addEventListener("click", () => light(e.key));
  html("input", { type: "checkbox", title: "train this parameter" }, row).addEventListener("change", (ev) => {
    const train = new Set(UI.state.settings.train);
    if (ev.target.checked) train.add(e.name); else train.delete(e.name);
    act({ action: "settings", train: UI.state.parameters.map((p) => p.name).filter((n) => train.has(n)) });
  });
  // The hook: data-param="KEY" holds the full-precision number in data-value.
  html("span", { "data-param": e.key, "data-value": String(e.value), hidden: "" }, row);
  const input = html("input", { type: "number", step: "any", "aria-label": e.key }, row);
  input.addEventListener("change", () => {
    const v = Number(input.value);
    if (input.value === "" || !Number.isFinite(v)) { showMessage(`${e.key}: not a number: '${input.value}'`); return; }
    act({ action: "set_param", key: e.key, value: v });
  });
  html("span", { class: "grad guard" }, row);
  const check = html("button", { title: "check numerically: backward against a central difference", text: "check" }, row);
  check.addEventListener("click", () => gradcheck(e.key, check));
  hoverLink(row, e.key);
  return row;
}

async function gradcheck(key, button) {
  try {
    const r = await api("GET", `/api/gradcheck?key=${encodeURIComponent(key)}`);
    button.textContent = r.ok ? "✓" : "✗";
    button.title = `${key}: backward ${r.analytical}, central difference ${r.numerical} (eps ${r.eps}), difference ${fmt(r.difference)}: ${r.ok ? "they agree" : "they DISAGREE"}`;
    showMessage(`check ${key}: backward ${fmt(r.analytical, 6)}, numerical ${fmt(r.numerical, 6)}, difference ${fmt(r.difference)}: ${r.ok ? "agree" : "disagree"}`, r.ok ? "info" : "error");
  } catch (e) {
    showMessage(e.message);
  }
}

// Hovering anything that stands for a parameter lights it everywhere.
function hoverLink(node, key) {
  node.addEventListener("mouseenter", () => hot(key, true));
  node.addEventListener("mouseleave", () => hot(key, false));
}

function hot(key, on) {
  for (const n of $$(`[data-key="${CSS.escape(key)}"]`)) n.classList.toggle("hot", on);
}

// A learner drags a number sideways: the value follows, one request at a time, the latest wins.
const drag = { key: null, x0: 0, v0: 0, pending: null, sending: false };

function startDrag(ev, key) {
  ev.preventDefault();
  const e = element(key);
  drag.key = key;
  drag.x0 = ev.clientX;
  drag.v0 = e.value;
  drag.scale = Math.max(0.01, Math.abs(e.value) * 0.01);
  window.addEventListener("pointermove", moveDrag);
  window.addEventListener("pointerup", endDrag, { once: true });
}

function moveDrag(ev) {
  const per = ev.shiftKey ? 0.001 : 0.01;
  const value = Number((drag.v0 + (ev.clientX - drag.x0) * per).toFixed(4));
  for (const t of $$(`[data-chip-value="${CSS.escape(drag.key)}"]`)) t.textContent = chipText(drag.key, value);
  drag.pending = value;
  sendDrag();
}

async function sendDrag() {
  if (drag.sending || drag.pending === null) return;
  drag.sending = true;
  const value = drag.pending;
  drag.pending = null;
  await act({ action: "set_param", key: drag.key, value });
  drag.sending = false;
  sendDrag();
}

function endDrag() {
  window.removeEventListener("pointermove", moveDrag);
}

// ---- the network view ---------------------------------------------------------------------------

function tooltip(text, ev) {
  const tip = $("#tooltip");
  if (!text) { tip.style.display = "none"; return; }
  tip.textContent = document.body.classList.contains("predicting") ? "answer the lesson's question first: then every number shows" : text;
  tip.style.display = "block";
  const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = x + "px";
  tip.style.top = ev.clientY + 14 + "px";
}

function withTooltip(node, textOf) {
  node.addEventListener("mousemove", async (ev) => tooltip(await textOf(), ev));
  node.addEventListener("mouseleave", () => tooltip(""));
}

function chipText(key, value) {
  const name = key;
  return `${name.startsWith("b") ? "+" : "×"} ${name} = ${fmt(value, 3)}`;
}

function chip(svg, key, x, y) {
  const e = element(key);
  const g = el("g", { class: "param-chip" + (e.trained ? "" : " frozen"), "data-key": key, transform: `translate(${x},${y})` }, svg);
  el("rect", { x: -48, y: -11, width: 96, height: 22, rx: 5 }, g);
  el("text", { "text-anchor": "middle", y: 4, "font-size": 12, class: "mono", "data-chip-value": key, text: chipText(key, e.value) }, g);
  g.addEventListener("pointerdown", (ev) => startDrag(ev, key));
  g.addEventListener("dblclick", () => light(key));
  hoverLink(g, key);
  withTooltip(g, () => `${key} = ${e.value}\nd${UI.state.loss_name}/d${key} = ${e.gradient}\n${e.trained ? "trained" : "held fixed"}\ndrag sideways (shift: finer), double-click: its chain rule`);
  return g;
}

function nodeShape(svg, x, y, label, sub, textOf, kind = "op") {
  const g = el("g", { class: "net-node", transform: `translate(${x},${y})` }, svg);
  const fill = { data: "#d4e4f4", op: "#ececec", sum: "#e8f4e8", loss: "#f9d1e6" }[kind];
  el("rect", { x: -44, y: -20, width: 88, height: 40, rx: 18, fill, stroke: "#606a78" }, g);
  el("text", { "text-anchor": "middle", y: sub ? -2 : 4, "font-size": 12, "font-weight": 600, text: label }, g);
  if (sub) el("text", { "text-anchor": "middle", y: 12, "font-size": 10, fill: "#5c6675", text: sub }, g);
  withTooltip(g, textOf);
  return g;
}

function edge(svg, a, b, keyName) {
  return el("path", { d: `M${a[0]},${a[1]} C${(a[0] + b[0]) / 2},${a[1]} ${(a[0] + b[0]) / 2},${b[1]} ${b[0]},${b[1]}`, class: "edge", fill: "none", stroke: "#8a94a3", "stroke-width": 2, "data-key": keyName || "" }, svg);
}

function drawNetwork(state) {
  const svg = clear($("#network"));
  if (state.network.kind === "lesson") drawLessonNetwork(svg, state);
  else drawMlp(svg, state);
}

function drawLessonNetwork(svg, state) {
  svg.setAttribute("viewBox", "0 0 600 300");
  const actName = state.settings.activation === "softplus" ? "SoftPlus" : state.settings.activation;
  const P = { input: [55, 150], top: [265, 70], bottom: [265, 230], sum: [445, 150], out: [548, 150] };
  edge(svg, [99, 150], [221, 70], "w1");
  edge(svg, [99, 150], [221, 230], "w2");
  edge(svg, [309, 70], [425, 150], "w3");
  edge(svg, [309, 230], [425, 150], "w4");
  edge(svg, [465, 150], [504, 150], "");
  const feature = state.data.features[0] || "Input";
  nodeShape(svg, ...P.input, "Input", feature, () => formulaText("input"), "data");
  nodeShape(svg, ...P.top, actName, "top node: y1", () => formulaText("top"));
  nodeShape(svg, ...P.bottom, actName, "bottom node: y2", () => formulaText("bottom"));
  const sum = el("g", { transform: `translate(${P.sum[0]},${P.sum[1]})` }, svg);
  el("circle", { r: 20, fill: "#e8f4e8", stroke: "#606a78" }, sum);
  el("text", { "text-anchor": "middle", y: 6, "font-size": 20, text: "+" }, sum);
  withTooltip(sum, () => formulaText("sum"));
  nodeShape(svg, ...P.out, "Predicted", state.data.target || "", () => formulaText("loss"), "loss");
  chip(svg, "w1", 150, 96);
  chip(svg, "b1", 265, 26);
  chip(svg, "w2", 150, 204);
  chip(svg, "b2", 265, 274);
  chip(svg, "w3", 366, 88);
  chip(svg, "w4", 366, 212);
  chip(svg, "b3", 456, 117);
}

// The formula of a node with the engine's numbers plugged in (read from the ops-level graph).
async function formulaText(which) {
  const g = await opsGraph();
  if (!g) return "";
  const st = UI.state;
  const v = (label) => {
    const n = g.nodes.find((m) => m.label === label);
    return n && n.value ? [].concat(n.value.values) : [];
  };
  const p = (k) => signed(element(k).value);
  const input = v("Input");
  const rows = (f) => input.map((_, i) => `  i=${i + 1}: ${f(i)}`).join("\n");
  if (which === "input") return `Input_i (${st.data.features[0] || "x"}): ${input.map((x) => fmt(x)).join(", ")}`;
  if (which === "top" || which === "bottom") {
    const [n, w, b] = which === "top" ? ["1", "w1", "b1"] : ["2", "w2", "b2"];
    const x = v("x" + n);
    const y = v("y" + n);
    return `x${n}_i = Input_i × ${w} + ${b} = Input_i × ${p(w)} + ${p(b)}\ny${n}_i = ${st.settings.activation}(x${n}_i)\n` +
      rows((i) => `x${n} = ${signed(input[i])} × ${p(w)} + ${p(b)} = ${fmt(x[i])},  y${n} = ${st.settings.activation}(${fmt(x[i])}) = ${fmt(y[i])}`);
  }
  const y1 = v("y1");
  const y2 = v("y2");
  const pred = v("Predicted");
  if (which === "sum") {
    return `Predicted_i = y1_i × w3 + y2_i × w4 + b3\n` +
      rows((i) => `${signed(y1[i])} × ${p("w3")} + ${signed(y2[i])} × ${p("w4")} + ${p("b3")} = ${fmt(pred[i])}`);
  }
  const obs = v("Observed");
  const parts = pred.map((q, i) => `(${fmt(obs[i])} - ${signed(q)})^2`);
  return `Predicted_i: ${pred.map((q) => fmt(q)).join(", ")}\n${st.loss_name} = ${st.settings.loss === "mse" ? "mean" : "sum"} of ${parts.join(" + ")}\n     = ${fmt(st.loss, 6)}`;
}

async function opsGraph() {
  if (UI.opsGraph && UI.opsGraph.version === UI.version) return UI.opsGraph.graph;
  const version = UI.version;
  try {
    const r = await api("GET", "/api/graph?level=ops");
    UI.opsGraph = { version, graph: r.graph };
    return r.graph;
  } catch (e) {
    return null;
  }
}

// Any other network: layers of circles, one line per weight (blue positive, orange negative).
function drawMlp(svg, state) {
  const sizes = state.network.sizes;
  const W = 600;
  const H = Math.max(260, Math.max(...sizes) * 34 + 40);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const xs = sizes.map((_, l) => 50 + (l * (W - 100)) / (sizes.length - 1));
  const ys = sizes.map((n) => Array.from({ length: n }, (_, j) => H / 2 + (j - (n - 1) / 2) * 34));
  const weights = state.parameters.filter((p) => p.name.endsWith("weight"));
  const biases = state.parameters.filter((p) => p.name.endsWith("bias"));
  const maxAbs = Math.max(1e-9, ...state.elements.map((e) => Math.abs(e.value)));
  weights.forEach((w, l) => {
    const prefix = w.name.slice(0, -"weight".length);
    w.value.forEach((row, j) => row.forEach((value, i) => {
      const key = `${prefix}weight[${j},${i}]`;
      const line = el("line", {
        x1: xs[l], y1: ys[l][i], x2: xs[l + 1], y2: ys[l + 1][j], class: "edge", "data-key": key,
        stroke: value >= 0 ? "#1f77b4" : "#ff7f0e", "stroke-width": 1 + (5 * Math.abs(value)) / maxAbs, "stroke-opacity": 0.75,
      }, svg);
      const grab = el("line", { x1: xs[l], y1: ys[l][i], x2: xs[l + 1], y2: ys[l + 1][j], stroke: "transparent", "stroke-width": 10, style: "cursor:ew-resize" }, svg);
      grab.addEventListener("pointerdown", (ev) => startDrag(ev, key));
      grab.addEventListener("dblclick", () => light(key));
      grab.addEventListener("mouseenter", () => hot(key, true));
      grab.addEventListener("mouseleave", () => hot(key, false));
      withTooltip(grab, () => { const e = element(key); return `${key} = ${e.value}\ngradient ${e.gradient}\ndrag sideways to change it`; });
      void line;
    }));
  });
  sizes.forEach((n, l) => ys[l].forEach((y, j) => {
    const g = el("g", { transform: `translate(${xs[l]},${y})` }, svg);
    el("circle", { r: 11, fill: l === 0 ? "#d4e4f4" : l === sizes.length - 1 ? "#f9d1e6" : "#ececec", stroke: "#606a78" }, g);
    withTooltip(g, () => mlpNodeText(state, weights, biases, l, j));
  }));
  const act = state.network.activation;
  sizes.forEach((n, l) => el("text", { x: xs[l], y: 16, "text-anchor": "middle", "font-size": 11, fill: "#5c6675", text: l === 0 ? "input" : l === sizes.length - 1 ? "output" : `${act} ×${n}` }, svg));
}

function mlpNodeText(state, weights, biases, l, j) {
  if (l === 0) return `input ${state.data.features[j] || j}`;
  const w = weights[l - 1].value[j];
  const b = biases[l - 1] ? biases[l - 1].value[j] : 0;
  const terms = w.map((v, i) => `${fmt(v)} × h${l - 1}_${i}`).join(" + ");
  const body = `${terms} + ${fmt(b)}`;
  return l === state.network.sizes.length - 1 ? `output ${j} = ${body}` : `h${l}_${j} = ${state.network.activation}(${body})`;
}
// ---- the views that need their own GET ----------------------------------------------------------

async function refreshViews() {
  const version = UI.version;
  const state = UI.state;
  drawNetwork(state);
  $(".landscape-only").style.display = UI.tab === "landscape" ? "" : "none";
  for (const b of $$("[data-tab]")) b.classList.toggle("on", b.dataset.tab === UI.tab);
  const loss = UI.tab === "landscape"
    ? `/api/landscape?x=${encodeURIComponent(UI.curveKey)}&y=${encodeURIComponent(UI.landscapeY)}&points=31`
    : `/api/loss_curve?key=${encodeURIComponent(UI.curveKey)}&points=121`;
  const get = (path) => api("GET", path).catch((e) => ({ error: e.message }));
  // NOTE: one after another, not at once: a view holds the session while it computes.
  const curves = await get("/api/curves?points=160");
  const lossView = await get(loss);
  const graph = await get(`/api/graph?level=${UI.level}`);
  if (version !== UI.version) return;   // a newer state arrived meanwhile: its own refresh draws
  drawSquiggle(curves);
  if (UI.tab === "landscape") drawLandscape(lossView); else drawLossCurve(lossView);
  UI.graph = graph.error ? null : graph;
  drawGraph(graph.error);
  if (UI.lit) await explainLit();
}

function unavailable(svg, text) {
  clear(svg);
  el("text", { x: 20, y: 40, "font-size": 13, fill: "#b3261e", text }, svg);
}

// ---- the squiggle: data points, the units' curves, their sum ------------------------------------

const UNIT_COLOURS = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const SQ = { left: 44, top: 14, width: 456, height: 268 };

function drawSquiggle(c) {
  const svg = $("#squiggle");
  if (c.error) { unavailable(svg, c.error); svg.dataset.sum = ""; return; }
  clear(svg);
  const pts = c.points;
  const curves = c.classes ? c.classes.map((k) => k.y) : [...c.units.map((u) => u.y), c.sum];
  const xs = scale(...extent(c.x, 0), SQ.left, SQ.left + SQ.width);
  const yr = extent([...pts.y, ...curves.flat()]);
  const ys = scale(yr[0], yr[1], SQ.top + SQ.height, SQ.top);
  axes(svg, SQ, xs, ys, UI.state.data.features[0] || "x", UI.state.data.target || "y");
  const plot = el("g", {}, svg);
  if (c.classes) {
    c.classes.forEach((k, j) => el("path", { d: path(c.x.map((x, i) => [xs(x), ys(k.y[i])])), fill: "none", stroke: UNIT_COLOURS[j % 8], "stroke-width": 2.5 }, plot));
  } else {
    c.units.forEach((u, j) => el("path", { d: path(c.x.map((x, i) => [xs(x), ys(u.y[i])])), fill: "none", stroke: UNIT_COLOURS[j % 8], "stroke-width": 2, "stroke-dasharray": "5 3", class: "unit" }, plot));
    el("path", { d: path(c.x.map((x, i) => [xs(x), ys(c.sum[i])])), fill: "none", stroke: "#2ca02c", "stroke-width": 3.2, class: "squiggle" }, plot);
  }
  legend(svg, c);
  pts.x.forEach((x, i) => {
    const dot = el("circle", { cx: xs(x), cy: ys(pts.y[i]), r: 6, fill: "#1d2430", stroke: "#fff", "stroke-width": 1.5, class: "point", style: "cursor:move" }, svg);
    dot.addEventListener("pointerdown", (ev) => pointDown(ev, i, xs, ys));
    dot.addEventListener("contextmenu", (ev) => { ev.preventDefault(); deletePoint(i); });
  });
  svg.dataset.x = JSON.stringify(c.x);
  svg.dataset.sum = JSON.stringify(c.sum || []);
  svg.onmousedown = (ev) => {
    if (ev.target.classList.contains("point") || ev.button !== 0) return;
    const p = svgPoint(svg, ev);
    if (p.x < SQ.left || p.x > SQ.left + SQ.width || p.y < SQ.top || p.y > SQ.top + SQ.height) return;
    addPoint(xs.invert(p.x), ys.invert(p.y));
  };
}

function legend(svg, c) {
  const items = c.classes
    ? c.classes.map((k, j) => [UNIT_COLOURS[j % 8], `P(${k.label})`])
    : [...c.units.map((u, j) => [UNIT_COLOURS[j % 8], u.label]), ["#2ca02c", `the sum + ${fmt(c.bias, 3)}`]];
  items.slice(0, 6).forEach(([colour, label], j) => {
    el("rect", { x: SQ.left + 8, y: SQ.top + 6 + j * 15, width: 14, height: 4, fill: colour }, svg);
    el("text", { x: SQ.left + 26, y: SQ.top + 11 + j * 15, "font-size": 10, text: label }, svg);
  });
}

function dataPoints() {
  const d = UI.state.data;
  return { x: d.x.map((r) => r[0]), y: d.y.slice() };
}

function sendPoints(x, y) {
  return act({ action: "set_data", x, y, features: UI.state.data.features, target: UI.state.data.target });
}

function addPoint(x, y) {
  const d = dataPoints();
  d.x.push(Number(x.toFixed(4)));
  d.y.push(Number(y.toFixed(4)));
  sendPoints(d.x, d.y);
}

function deletePoint(i) {
  const d = dataPoints();
  if (d.x.length <= 1) { showMessage("the last point stays: a fit needs at least one"); return; }
  d.x.splice(i, 1);
  d.y.splice(i, 1);
  sendPoints(d.x, d.y);
}

function pointDown(ev, i, xs, ys) {
  ev.preventDefault();
  ev.stopPropagation();
  if (ev.button !== 0) return;
  if (ev.shiftKey) { deletePoint(i); return; }
  const svg = $("#squiggle");
  const dot = ev.target;
  let moved = false;
  const move = (e) => {
    const p = svgPoint(svg, e);
    dot.setAttribute("cx", p.x);
    dot.setAttribute("cy", p.y);
    moved = true;
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", () => {
    window.removeEventListener("pointermove", move);
    if (!moved) return;
    const d = dataPoints();
    d.x[i] = Number(xs.invert(Number(dot.getAttribute("cx"))).toFixed(4));
    d.y[i] = Number(ys.invert(Number(dot.getAttribute("cy"))).toFixed(4));
    sendPoints(d.x, d.y);
  }, { once: true });
}

async function loadPresets() {
  const list = await api("GET", "/api/presets");
  const select = $("#preset");
  clear(select);
  html("option", { value: "", text: "(your points)" }, select);
  for (const p of list) html("option", { value: p.name, text: p.title }, select);
}

function loadPreset() {
  const name = $("#preset").value;
  if (!name) return;
  const noise = Number($("#noise").value) || 0;
  act(noise > 0 ? { action: "preset", name, noise } : { action: "preset", name });
}

async function upload(ev) {
  const file = ev.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const target = $("#upload-target").value.trim();
  if (target) form.append("target", target);
  await (queue = queue.then(async () => {
    try {
      const state = await api("POST", "/api/upload", form);
      showMessage(`${file.name}: ${state.data.rows} rows, target ${state.data.target}`, "info");
      await applyState(state);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showMessage(`${file.name} was not loaded: ${e.message}`, "error");
    }
  }).catch(() => {}));
  ev.target.value = "";
}

// ---- the loss against one parameter: pink curve, ball, tangent, step arrow, earlier steps -------

const LC = { left: 52, top: 14, width: 448, height: 272 };

function drawLossCurve(c) {
  const svg = $("#loss-view");
  if (c.error) { unavailable(svg, c.error); return; }
  clear(svg);
  const xs = scale(c.values[0], c.values[c.values.length - 1], LC.left, LC.left + LC.width);
  const finite = c.loss.filter(Number.isFinite);
  const lo = Math.min(...finite, c.current_loss);
  const hi = Math.max(...finite);
  const pad = (hi - lo) * 0.06 || 1;
  const ys = scale(lo - pad, hi + pad, LC.top + LC.height, LC.top);
  const name = UI.state.loss_name;
  axes(svg, LC, xs, ys, c.key, name);
  const clip = el("clipPath", { id: "lc-clip" }, el("defs", {}, svg));
  el("rect", { x: LC.left, y: LC.top, width: LC.width, height: LC.height }, clip);
  const g = el("g", { "clip-path": "url(#lc-clip)" }, svg);
  el("path", { d: path(c.values.map((v, i) => [xs(v), ys(c.loss[i])])), fill: "none", stroke: "#d6337a", "stroke-width": 3 }, g);
  // The earlier steps of this run, numbered.
  const steps = c.path;
  el("path", { d: path(steps.map((s) => [xs(s.value), ys(s.loss)])), fill: "none", stroke: "#555", "stroke-width": 1, "stroke-dasharray": "3 2" }, g);
  steps.forEach((s, i) => el("circle", { cx: xs(s.value), cy: ys(s.loss), r: 3.5, fill: "#fff", stroke: "#555" }, g));
  // The tangent: slope = the derivative at the ball.
  const span = (c.values[c.values.length - 1] - c.values[0]) * 0.18;
  const t0 = c.current - span;
  const t1 = c.current + span;
  el("line", { x1: xs(t0), y1: ys(c.current_loss - c.slope * span), x2: xs(t1), y2: ys(c.current_loss + c.slope * span), stroke: "#1d2430", "stroke-width": 2, class: "tangent" }, g);
  // The step: from the current value to the next one, learning rate × slope long.
  const defs = $("defs", svg);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#2458a6" }, marker);
  if (Number.isFinite(c.next) && Math.abs(xs(c.next) - xs(c.current)) > 2) {
    el("line", { x1: xs(c.current), y1: ys(c.current_loss), x2: xs(c.next), y2: ys(c.current_loss), stroke: "#2458a6", "stroke-width": 2.5, "marker-end": "url(#arrow)" }, g);
  }
  el("circle", { cx: xs(c.current), cy: ys(c.current_loss), r: 7, fill: "#d6337a", stroke: "#1d2430", "stroke-width": 1.5, class: "ball", "data-key": c.key }, g);
  const lr = UI.state.settings.lr;
  $("#loss-caption").textContent =
    `${c.key} = ${fmt(c.current)}: ${name} = ${fmt(c.current_loss)}, slope d${name}/d${c.key} = ${fmt(c.slope)}; ` +
    `step size = ${fmt(lr)} × ${fmt(c.slope)} = ${fmt(c.step)}, next ${c.key} = ${fmt(c.current)} - (${fmt(c.step)}) = ${fmt(c.next)}` +
    (UI.state.settings.optimizer !== "gd" ? ` (the gradient-descent step; ${UI.state.settings.optimizer} moves by its own rule)` : "");
}

// ---- the landscape over two parameters, and the path --------------------------------------------

function drawLandscape(c) {
  const svg = $("#loss-view");
  if (c.error) { unavailable(svg, c.error); return; }
  clear(svg);
  const xs = scale(c.xs[0], c.xs[c.xs.length - 1], LC.left, LC.left + LC.width);
  const ys = scale(c.ys[0], c.ys[c.ys.length - 1], LC.top + LC.height, LC.top);
  axes(svg, LC, xs, ys, c.x_key, c.y_key);
  const flat = c.loss.flat().filter(Number.isFinite);
  const lo = Math.log(Math.min(...flat) + 1e-12);
  const hi = Math.log(Math.max(...flat) + 1e-12);
  const dx = LC.width / (c.xs.length - 1);
  const dy = LC.height / (c.ys.length - 1);
  const g = el("g", {}, svg);
  c.ys.forEach((yv, j) => c.xs.forEach((xv, i) => {
    const v = c.loss[j][i];
    const t = Number.isFinite(v) ? (Math.log(v + 1e-12) - lo) / (hi - lo || 1) : 1;
    el("rect", { x: xs(xv) - dx / 2, y: ys(yv) - dy / 2, width: dx + 0.5, height: dy + 0.5, fill: heat(t) }, g);
  }));
  el("path", { d: path(c.path.map(([a, b]) => [xs(a), ys(b)])), fill: "none", stroke: "#fff", "stroke-width": 2.5 }, svg);
  if (c.path.length <= 40) c.path.forEach(([a, b]) => el("circle", { cx: xs(a), cy: ys(b), r: 2.5, fill: "#1d2430", stroke: "#fff", "stroke-width": 0.8 }, svg));
  el("circle", { cx: xs(c.current[0]), cy: ys(c.current[1]), r: 7, fill: "#d6337a", stroke: "#fff", "stroke-width": 2, class: "ball" }, svg);
  $("#loss-caption").textContent = `${UI.state.loss_name} over ${c.x_key} and ${c.y_key} (log colour: dark is low), the others held; the white line is this run's path.`;
}

function heat(t) {
  // dark blue (low) through teal and yellow (high)
  const stops = [[24, 30, 80], [33, 120, 160], [90, 190, 120], [250, 230, 90]];
  const s = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(s));
  const f = s - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c.join(",")})`;
}
// ---- the computational graph, drawn from the graph JSON -----------------------------------------

const KIND_FILL = { parameter: "#fbe3c0", data: "#d4e4f4", op: "#ececec", loss: "#f9d1e6" };
const KIND_STROKE = { parameter: "#c08a2c", data: "#2f6db0", op: "#7a828d", loss: "#b8327a" };

function arr(a) {
  return a && a.values !== null && a.values !== undefined ? [].concat(a.values).flat(Infinity) : null;
}

function drawGraph(error) {
  const svg = $("#graph");
  if (error) { unavailable(svg, error); return; }
  if (!UI.graph) return;
  const { graph: g, steps } = UI.graph;
  clear(svg);
  svg.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
  svg.style.minWidth = UI.level === "ops" ? `${Math.round(g.width * 0.7)}px` : "";
  svg.parentElement.style.overflowX = "auto";
  const boxes = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  const done = doneNodes(steps);
  const current = UI.backward >= 0 ? steps[UI.backward] : null;
  const litIds = UI.lit ? litBoxes(g) : null;
  for (const e of g.edges) drawGraphEdge(svg, e, boxes, litIds);
  for (const n of g.nodes) drawGraphNode(svg, n, done, current, litIds);
  for (const e of g.edges) drawEdgeLabel(svg, e, boxes);
  drawBackwardText(steps, current);
  const now = svg.querySelector(".graph-node.current");
  if (now) now.scrollIntoView({ block: "nearest", inline: "center" });   // the wide graph scrolls to the step
}

function nodeOfStep(step) {
  return UI.graph.graph.nodes.find((n) => n.graph_nodes.includes(step.node));
}

// The graph nodes the reverse pass has reached so far (every one when it is not being stepped).
function doneNodes(steps) {
  if (UI.backward < 0) return null;
  return new Set(steps.slice(0, UI.backward + 1).map((s) => s.node));
}

function drawGraphEdge(svg, e, boxes, litIds) {
  const a = boxes[e.source];
  const b = boxes[e.target];
  const x1 = a.x + a.width;
  const y1 = a.y + a.height / 2;
  const x2 = b.x;
  const y2 = b.y + b.height / 2;
  const mid = (x1 + x2) / 2;
  const keysOn = e.params.map((p) => p.name);
  const lit = litIds && ((litIds.has(e.source) && litIds.has(e.target)) || keysOn.includes(UI.lit.replace(/\[.*$/, "")));
  el("path", {
    d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 4},${y2}`, fill: "none", stroke: lit ? "#d6337a" : "#9aa2ad",
    "stroke-width": lit ? 3.5 : 1.6, class: "edge" + (lit ? " lit" : ""), "data-key": keysOn[0] || "",
  }, svg);
}

function drawEdgeLabel(svg, e, boxes) {
  if (!e.lines.length) return;
  const a = boxes[e.source];
  const b = boxes[e.target];
  const cx = (a.x + a.width + b.x) / 2;
  const cy = (a.y + a.height / 2 + b.y + b.height / 2) / 2;
  const h = e.lines.length * 15 + 6;
  const w = 150;
  e.params.forEach((p, k) => {
    const g = el("g", { class: "graph-param", "data-key": p.name, "data-gradient": JSON.stringify(arr(p.gradient)), "data-node": p.name, style: "cursor:pointer" }, svg);
    const part = e.lines.length / e.params.length;
    el("rect", { x: cx - w / 2, y: cy - h / 2 + k * part * 15, width: w, height: part * 15 + 6, rx: 4, fill: "#fff", stroke: "#ddd" }, g);
    e.lines.slice(k * part, (k + 1) * part).forEach((line, i) => el("text", {
      x: cx, y: cy - h / 2 + 14 + (k * part + i) * 15, "text-anchor": "middle", "font-size": 12, class: "mono",
      fill: line.startsWith("d") ? "#9b1c1c" : "#8a5a00", text: line,
    }, g));
    g.addEventListener("click", () => light(p.name));
    hoverLink(g, p.name);
  });
}

function drawGraphNode(svg, n, done, current, litIds) {
  const isCurrent = current && n.graph_nodes.includes(current.node);
  const isDone = done && n.graph_nodes.some((i) => done.has(i));
  const paramKey = n.kind === "parameter" ? n.label : (n.params[0] && n.params[0].name) || null;
  const g = el("g", {
    class: "graph-node" + (litIds && litIds.has(n.id) ? " lit-box" : "") + (isCurrent ? " current" : ""), "data-node": n.id, "data-label": n.label,
    "data-gradient": JSON.stringify(arr(n.gradient)), "data-value-json": JSON.stringify(arr(n.value)),
  }, svg);
  if (n.kind === "parameter") g.dataset.key = n.label;
  // A bias drawn inside a box (b3 in the sum): its value and gradient as data, for the hover link and tests.
  for (const p of n.params) {
    el("g", { class: "graph-param", "data-key": p.name, "data-gradient": JSON.stringify(arr(p.gradient)), "data-value-json": JSON.stringify(arr(p.value)) }, g);
  }
  const faded = done && !isDone;
  el("rect", {
    x: n.x, y: n.y, width: n.width, height: n.height, rx: 6, fill: KIND_FILL[n.kind] || "#eee",
    stroke: isCurrent ? "#d62728" : KIND_STROKE[n.kind] || "#888", "stroke-width": isCurrent ? 4 : 1.5,
    opacity: faded ? 0.45 : 1,
  }, g);
  n.lines.forEach((line, i) => fitText(el("text", {
    x: n.x + 8, y: n.y + 17 + i * 15, "font-size": 12, class: "mono", "font-weight": i === 0 ? 700 : 400,
    fill: /^(dSSR|dMSE|d\S+\/d|grad)/.test(line) ? (faded ? "#c9a0a0" : "#9b1c1c") : faded ? "#999" : "#1d2430", text: line,
  }, g), n.width - 14));
  if (paramKey) {
    g.style.cursor = "pointer";
    g.addEventListener("click", () => light(n.kind === "parameter" ? n.label : paramKey));
  }
  if (n.kind === "parameter") hoverLink(g, n.label);
  withTooltip(g, () => n.doc || n.formula || n.label);
}

// The boxes were laid out for chainrule's own font metrics: squeeze a line that the browser's font makes wider.
function fitText(text, width) {
  if (text.getComputedTextLength() > width) {
    text.setAttribute("textLength", width);
    text.setAttribute("lengthAdjust", "spacingAndGlyphs");
  }
}

// The boxes on the chain-rule paths of a parameter: explain's path_nodes (indices into the graph's
// nodes) mapped to the boxes that show them. Until explain has answered, nothing is lit.
function litBoxes(g) {
  const nodes = new Set(UI.litNodes || []);
  return new Set(g.nodes.filter((n) => n.graph_nodes.some((i) => nodes.has(i))).map((n) => n.id));
}

function drawBackwardText(steps, current) {
  const box = $("#backward-text");
  if (!current) {
    box.textContent = `The reverse pass has ${steps.length} steps, output first. "Backward step" goes through them one node at a time.`;
    return;
  }
  const name = UI.state.loss_name;
  const lines = [`step ${UI.backward + 1} of ${steps.length}: ${current.equation}`];
  for (const inc of current.incoming) {
    const up = arr(inc.upstream);
    const loc = arr(inc.local);
    const prod = arr(inc.product);
    lines.push(`  from ${inc.label}: d${name}/d${inc.label} ${show(up)} × (${inc.derivative}) ${loc ? show(loc) : "(a matrix product)"} = ${show(prod)}`);
  }
  if (!current.incoming.length) lines.push(`  the output itself: d${name}/d${name} = 1`);
  lines.push(`  gradient = ${show(arr(current.gradient))}`);
  box.textContent = lines.join("\n");
}

function show(values) {
  if (!values) return "(large: see the norm)";
  return values.length === 1 ? fmt(values[0]) : "[" + values.map((v) => fmt(v)).join(", ") + "]";
}

// Clicking a parameter: light its paths in the graph and print explain's table for it.
async function light(key) {
  UI.lit = UI.lit === key ? null : key;
  UI.litNodes = null;
  drawGraph();
  await explainLit();
}

// explain's table for the lit parameter, at the current values (again after every change).
async function explainLit() {
  const box = $("#explain");
  if (!UI.lit) { box.textContent = ""; return; }
  const key = UI.lit;
  const explainKey = element(key) ? key : (UI.state.elements.find((e) => e.name === key) || {}).key;
  try {
    const r = await api("GET", `/api/explain?key=${encodeURIComponent(explainKey)}`);
    UI.litNodes = r.path_nodes || [];
    drawGraph();
    clear(box);
    html("div", { class: "hint", text: `The chain rule for ${r.key}: ${r.chain}` }, box);
    html("pre", { text: r.text, "data-explain": r.key }, box);
    html("div", { class: "hint", text: `sum of the paths ${r.total}; backward's gradient ${r.gradient}` + (r.more_paths ? `; ${r.more_paths} more paths not shown` : "") }, box);
  } catch (e) {
    box.textContent = e.message;
  }
}

// ---- the training panel -------------------------------------------------------------------------

function drawStats(state) {
  const it = $("[data-iteration]");
  it.dataset.value = String(state.iteration);
  it.textContent = state.iteration;
  const loss = $("[data-loss]");
  loss.dataset.value = state.loss === null ? "null" : String(state.loss);
  loss.textContent = state.loss === null ? "not finite" : fmt(state.loss, 6);
  const stop = $("#stop-reason");
  stop.textContent = state.stop_reason ? `Stopped: ${state.stop_reason}` : "";
  stop.dataset.value = state.stop_reason || "";
  stop.style.color = state.diverged ? "#b3261e" : "#1e7b34";
  drawBadges(state);
}

function drawBadges(state) {
  const box = clear($("#badges"));
  const count = (kind) => state.events.filter((e) => e.kind === kind);
  const badge = (cls, text, title) => html("span", { class: "badge " + cls, text, title, "data-badge": cls }, box);
  const vanishing = count("vanishing");
  const exploding = count("exploding");
  const diverged = count("diverged");
  const warnings = count("warning");
  if (!vanishing.length && !exploding.length && !diverged.length) badge("ok", "gradients healthy", "no vanishing or exploding gradient seen in this run");
  if (vanishing.length) badge("warn", `vanishing gradients ×${vanishing.length}`, vanishing.map((e) => `iteration ${e.iteration}: ${e.message}`).join("\n"));
  if (exploding.length) badge("bad", `exploding gradients ×${exploding.length}`, exploding.map((e) => `iteration ${e.iteration}: ${e.message}`).join("\n"));
  if (diverged.length) badge("bad", "diverged", diverged.map((e) => e.message).join("\n"));
  for (const note of count("note")) badge("info", note.message, note.message);
  if (warnings.length) badge("warn", `${warnings.length} warning${warnings.length > 1 ? "s" : ""}`, warnings.map((e) => e.message).join("\n"));
}

function drawTable(state) {
  const table = clear($("#trace"));
  const name = state.loss_name;
  const key = UI.tableKey;
  const head = html("tr", {}, html("thead", {}, table));
  for (const h of ["iteration", name, key, `d${name}/d${key}`, "step size", `new ${key}`]) html("th", { text: h }, head);
  const body = html("tbody", {}, table);
  const rows = state.history.rows.filter((r) => r[2] === key);
  if (state.history.rows_from > 0) {
    html("td", { colspan: 6, class: "hint", text: `the latest rows of ${state.history.total_rows}; History CSV has them all` }, html("tr", {}, body));
  }
  for (const r of rows) {
    const tr = html("tr", { "data-row": r[0] }, body);
    for (const v of [r[0], r[1], r[3], r[4], r[5], r[6]]) html("td", { text: fmt(v, 4), title: String(v) }, tr);
  }
  if (!rows.length) html("td", { colspan: 6, class: "hint", text: state.settings.train.includes(key.replace(/\[.*$/, "")) ? "press Step: each iteration adds a row" : `${key} is held fixed: no rows` }, html("tr", {}, body));
  const scroller = table.parentElement;
  scroller.scrollTop = scroller.scrollHeight;
}

const TC = { left: 56, top: 12, width: 444, height: 196 };

function drawTrainingChart(state) {
  const svg = clear($("#training"));
  const losses = state.history.loss;
  const n = losses.length;
  const xs = scale(0, Math.max(1, n - 1) + 1, TC.left, TC.left + TC.width);
  const finite = losses.filter(Number.isFinite);
  const logScale = finite.length > 1 && Math.min(...finite) > 0 && Math.max(...finite) / Math.min(...finite) > 50;
  const tr = (v) => (logScale ? Math.log10(v) : v);
  const yr = finite.length ? extent(finite.map(tr)) : [0, 1];
  const ys = scale(yr[0], yr[1], TC.top + TC.height, TC.top);
  axes(svg, TC, xs, ys, "iteration", state.loss_name + (logScale ? " (log scale)" : ""), logScale);
  el("path", { d: path(losses.map((v, i) => [xs(i + 1), ys(tr(v))])), fill: "none", stroke: "#d6337a", "stroke-width": 2 }, svg);
  losses.forEach((v, i) => { if (n < 60) el("circle", { cx: xs(i + 1), cy: ys(tr(v)), r: 2.5, fill: "#d6337a" }, svg); });
  if (!n) el("text", { x: TC.left + 12, y: TC.top + 24, "font-size": 12, fill: "#5c6675", text: "the loss of each iteration appears here" }, svg);
  const marker = el("line", { y1: TC.top, y2: TC.top + TC.height, stroke: "#1d2430", "stroke-dasharray": "2 2", visibility: "hidden" }, svg);
  svg.onmousemove = (ev) => {
    if (!n) return;
    const p = svgPoint(svg, ev);
    const i = Math.max(1, Math.min(n, Math.round(xs.invert(p.x))));
    marker.setAttribute("x1", xs(i));
    marker.setAttribute("x2", xs(i));
    marker.setAttribute("visibility", "visible");
    tooltip(`iteration ${i}: ${state.loss_name} ${losses[i - 1]}`, ev);
  };
  svg.onmouseleave = () => { marker.setAttribute("visibility", "hidden"); tooltip(""); };
}

function drawRuns(state) {
  const strip = clear($("#restarts"));
  const r = state.restarts;
  if (r) {
    const finite = r.losses.filter(Number.isFinite);
    const lo = Math.log10(Math.min(...finite) + 1e-12);
    const hi = Math.log10(Math.max(...finite) + 1e-12);
    r.losses.forEach((v, i) => {
      const t = Number.isFinite(v) ? (Math.log10(v + 1e-12) - lo) / (hi - lo || 1) : 1;
      html("div", {
        class: "bar" + (i === r.best ? " best" : ""), style: `height:${6 + 38 * t}px`,
        title: `start ${i + 1}: final ${state.loss_name} ${v}${i === r.best ? " (the best: now the current values)" : ""}`, "data-restart": i,
      }, strip);
    });
    html("span", { class: "hint", text: ` ${r.n} starts from seed ${r.seed}; best ${fmt(r.losses[r.best])}` }, strip);
  }
  const runs = $("#runs");
  clear(runs);
  if (state.runs.length) {
    html("div", { class: "hint", text: "earlier runs:" }, runs);
    for (const run of state.runs.slice(-6)) {
      html("div", { class: "hint mono", text: `${run.optimizer} lr ${run.lr} seed ${run.seed}: ${run.iterations} iterations, final ${fmt(run.final_loss)}${run.stop_reason ? " (" + run.stop_reason + ")" : ""}` }, runs);
    }
  }
}
// ---- lessons mode -------------------------------------------------------------------------------

async function drawLesson(state) {
  const box = $("#lesson");
  for (const a of $$("#lessons-nav a")) a.classList.toggle("on", Number(a.dataset.lesson) === (state.lesson ? state.lesson.id : 0));
  for (const v of $$("section.view")) v.style.outline = "";
  if (!state.lesson) { box.classList.remove("on"); UI.lessonFile = null; document.body.classList.remove("predicting"); return; }
  const { id, step, steps } = state.lesson;
  if (!UI.lessonFile || UI.lessonFile.id !== id) {
    try { UI.lessonFile = await api("GET", `/api/lessons/${id}`); } catch (e) { showMessage(e.message); return; }
  }
  const lesson = UI.lessonFile;
  const s = lesson.steps[step] || { text: "" };
  box.classList.add("on");
  $("#lesson-title").textContent = `Lesson ${id}: ${lesson.title}`;
  const text = clear($("#lesson-text"));
  for (const para of s.text.split(/\n\s*\n/)) html("p", { text: para }, text);
  $("#lesson-pos").textContent = `step ${step + 1} of ${steps}`;
  $('[data-action="lesson-prev"]').disabled = step === 0;
  $('[data-action="lesson-next"]').disabled = step >= steps - 1;
  const VIEW = { network: "view-network", squiggle: "view-squiggle", loss_curve: "view-loss", landscape: "view-loss", graph: "view-graph", training: "view-training" };
  for (const f of s.focus || []) { const v = document.getElementById(VIEW[f]); if (v) v.style.outline = "3px solid #ecd98a"; }
  // A step that opens brings its views forward once; the learner may switch away afterwards.
  const opened = `${id}:${step}`;
  if (UI.lessonOpened !== opened) {
    UI.lessonOpened = opened;
    const focus = s.focus || [];
    const tab = focus.includes("landscape") && !focus.includes("loss_curve") ? "landscape" : focus.includes("loss_curve") ? "curve" : UI.tab;
    if (tab !== UI.tab) { UI.tab = tab; refreshViews(); }
  }
  drawPrompt(s.prompt, state.lesson.answer);
}

function drawPrompt(prompt, answer) {
  const box = clear($("#lesson-prompt"));
  box.style.display = prompt ? "" : "none";
  // Predict first: until the learner answers, the numbers that give the answer away are blurred.
  document.body.classList.toggle("predicting", Boolean(prompt && !answer));
  if (!prompt) return;
  html("div", { text: "Predict, then reveal: " + prompt.question }, box);
  const row = html("div", { class: "row" }, box);
  const input = html("input", { type: "text", "data-control": "answer", placeholder: "your number" }, row);
  const go = html("button", { text: "Reveal", "data-action": "answer" }, row);
  const send = () => {
    const v = Number(input.value.trim());
    if (input.value.trim() === "" || !Number.isFinite(v)) { showMessage(`type a number first; got '${input.value}'`); return; }
    act({ action: "answer", value: v });
  };
  go.addEventListener("click", send);
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") send(); });
  if (answer) {
    input.value = answer.given;
    html("div", {
      class: "reveal" + (answer.correct ? "" : " wrong"), "data-reveal": answer.correct ? "correct" : "wrong",
      text: `${answer.correct ? "Right" : "Not quite"}: you said ${answer.given}; the engine computes ${fmt(answer.expected, 4)}.`,
      title: String(answer.expected),
    }, box);
  }
}

function lessonStep(delta) {
  const l = UI.state.lesson;
  if (!l) return;
  act({ action: "lesson_step", step: Math.max(0, Math.min(l.steps - 1, l.step + delta)) });
}

// ---- the state in the URL: the server's replayable actions, plus what the page shows ------------

function b64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64url(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

function viewPart() {
  const v = new URLSearchParams();
  if (UI.curveKey) v.set("param", UI.curveKey);
  if (UI.tab !== "curve") v.set("tab", UI.tab);
  if (UI.tab === "landscape" && UI.landscapeY) v.set("y", UI.landscapeY);
  if (UI.level) v.set("level", UI.level);
  if (UI.tableKey) v.set("table", UI.tableKey);
  return v.toString();
}

let linkSeq = 0;
async function writeHash() {
  const seq = ++linkSeq;
  let link;
  try { link = (await api("GET", "/api/link")).link; } catch (e) { return; }
  if (seq !== linkSeq) return;
  const a = link.actions.length === 1 ? link.actions[0] : null;
  const only = a && a.action === "lesson" && Object.keys(a).length === 2 ? a.id : null;   // {"action": "lesson", "id": N}
  const head = only !== null ? `lesson=${only}` : `s=${b64url(JSON.stringify(link))}`;
  const hash = `#${head}&${viewPart()}`;
  if (hash !== location.hash) {
    UI.lastHash = hash;
    history.replaceState(null, "", hash);
  }
}

function readView(params) {
  if (params.get("param")) UI.curveKey = params.get("param");
  if (params.get("tab")) UI.tab = params.get("tab") === "landscape" ? "landscape" : "curve";
  if (params.get("y")) UI.landscapeY = params.get("y");
  if (params.get("level")) UI.level = params.get("level");
  if (params.get("table")) UI.tableKey = params.get("table");
}

async function openFromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  readView(params);
  stopPlay();
  UI.frames = [];
  if (params.get("s")) {
    let link;
    try { link = JSON.parse(unb64url(params.get("s"))); } catch (e) { showMessage("the link in the address is damaged: it could not be read; showing this tab's session instead"); }
    if (link) {
      const state = await (queue = queue.then(() => api("POST", "/api/restore", { link })).catch((e) => { showMessage(`the link could not be opened: ${e.message}`); return null; }));
      if (state) { await applyState(state); return; }
    }
  } else if (params.get("lesson")) {
    const id = Number(params.get("lesson"));
    const state = await act({ action: "lesson", id });
    if (state) return;
  }
  await applyState(await api("GET", "/api/state"));
}

// ---- exports ------------------------------------------------------------------------------------

async function downloadFrom(path, name) {
  try {
    const res = await api("GET", path, null, true);
    download(name, await res.blob());
  } catch (e) {
    showMessage(e.message);
  }
}

async function copyCode() {
  try {
    const { code } = await api("GET", "/api/export/code");
    const out = $("#code-out");
    out.style.display = "block";
    out.value = code;
    out.select();
    try { await navigator.clipboard.writeText(code); showMessage("the Python code is on the clipboard (and shown below the stats)", "info"); } catch (e) { showMessage("select the code below and copy it", "info"); }
  } catch (e) {
    showMessage(e.message);
  }
}

async function exportView(view, format) {
  const svg = document.getElementById(view);
  const name = `playground-${view}.${format}`;
  if (format === "svg") { download(name, new Blob([svgText(svg)], { type: "image/svg+xml" })); return; }
  const canvas = await svgToCanvas(svg, 2);
  canvas.toBlob((blob) => download(name, blob), "image/png");
}

const MAX_FRAMES = 240;

function captureFrame(state) {
  const svg = $("#squiggle");
  if (!svg.dataset.sum) return;
  if (UI.frames.length && state.iteration === 0) UI.frames = [];
  const copy = svg.cloneNode(true);
  const loss = state.loss === null ? "not finite" : fmt(state.loss, 4);
  el("text", { x: SQ.left + SQ.width - 6, y: SQ.top + 16, "text-anchor": "end", "font-size": 12, "font-weight": 600, text: `iteration ${state.iteration}: ${state.loss_name} ${loss}` }, copy);
  UI.frames.push(svgText(copy));
  if (UI.frames.length > MAX_FRAMES) UI.frames = UI.frames.filter((_, i) => i % 2 === 0);
}

async function exportGif() {
  if (UI.frames.length < 2) { showMessage("step a few times first: the GIF shows the squiggle after each step"); return; }
  showMessage(`drawing ${UI.frames.length} frames ...`, "info");
  const vb = $("#squiggle").viewBox.baseVal;
  const w = Math.round(vb.width);
  const h = Math.round(vb.height);
  const frames = [];
  for (const text of UI.frames) {
    const img = await new Promise((resolve, reject) => {
      const i = new Image();
      i.onload = () => resolve(i);
      i.onerror = reject;
      i.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
    });
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    ctx.drawImage(img, 0, 0, w, h);
    frames.push(ctx.getImageData(0, 0, w, h).data);
  }
  download("playground-squiggle.gif", new Blob([encodeGif(frames, w, h, 25)], { type: "image/gif" }));
  showMessage(`playground-squiggle.gif: ${frames.length} frames`, "info");
}

// ---- start --------------------------------------------------------------------------------------

async function main() {
  bindControls();
  try {
    await loadPresets();
    await openFromHash();
  } catch (e) {
    showMessage(e.message);
  }
  setBusy(-1);   // the page starts busy (data-busy="1" in the HTML) until the first state is drawn
}

main();
