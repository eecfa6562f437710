// The demo page: reads files, draws the grid. Inference (and CIFAR decoding)
// happens in the Rust/WASM module, on the GPU through WebGPU.
import init, { Classifier, decodeCifar, classNames } from "./pkg/resnet8_web.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const TOP = 3;

const state = {
  classifier: null,
  names: [],
  images: null, // Float32Array, NHWC raw 0..255
  labels: null, // Uint8Array or null
  count: 0,
  adapterName: "",
  adapterInfo: null, // what the browser tells of its adapter (GPUAdapterInfo, limits, features)
  modelName: "",
  dataName: "",
  reference: null, // { name, bytes } of a Keras per-layer .npz
  lastDiff: null,
};

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function showNoGpu(detail) {
  $("nogpu").hidden = false;
  $("nogpu-detail").textContent = detail;
  $("adapter").textContent = "No WebGPU adapter.";
  $("controls").hidden = true;
  setStatus("no WebGPU", true);
}

async function report(result) {
  window.resnet8Result = result;
  if (!params.has("report")) return;
  await fetch("/result", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(result) });
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

async function loadModel(bytes, name) {
  setStatus("loading model, compiling shaders…");
  // ?kernel=NAME forces a conv kernel variant (see `resnet8 bench --variants`);
  // ?precision=f16 stores activations as f16 where the adapter has shader-f16.
  state.classifier = await Classifier.load(bytes, params.get("kernel") ?? undefined,
                                           params.get("precision") ?? undefined);
  const a = JSON.parse(state.classifier.adapter);
  state.adapterInfo = await browserAdapterInfo();
  const info = state.adapterInfo.info;
  const extra = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") +
    (info.isFallbackAdapter ? " (fallback adapter)" : "");
  state.adapterName = a.name || extra || "WebGPU adapter";
  $("adapter").textContent =
    `adapter: ${state.adapterName} · backend ${a.backend} · ${a.device_type}` +
    (extra && extra !== state.adapterName ? ` · ${extra}` : "") +
    ` · max storage binding ${(a.max_storage_buffer_binding_size / 2 ** 20).toFixed(0)} MiB · timestamps ${a.timestamp_query ? "yes" : "no"}` +
    ` · runs ${state.classifier.kind === "int8" ? "int8" : state.classifier.precision}` +
    (a.shader_f16 ? "" : " (no shader-f16 here)");
  showAdapterPanel(a, state.adapterInfo);
  // f16 storage differs from the f32 CPU engine by more than the balanced bound.
  if (state.classifier.precision === "f16" && !params.has("tolerance")) $("tolerance").value = "permissive";
  state.modelName = name;
  $("s-model").textContent = `${name} (${state.classifier.kind})`;
  updateRunButton();
  const warnings = JSON.parse(state.classifier.warnings);
  setStatus(warnings.length ? `model ready (warning: ${warnings.join("; ")})` : "model ready");
}

// What the browser says of its adapter: GPUAdapterInfo, every limit, every
// feature (the engine's own summary comes from wgpu, `classifier.adapter`).
async function browserAdapterInfo() {
  const out = { info: {}, limits: {}, features: [] };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return out;
    for (const k of ["vendor", "architecture", "device", "description", "subgroupMinSize", "subgroupMaxSize", "isFallbackAdapter"]) {
      if (adapter.info && adapter.info[k] !== undefined) out.info[k] = adapter.info[k];
    }
    for (const k in adapter.limits) out.limits[k] = adapter.limits[k];
    out.features = [...adapter.features].sort();
  } catch (_) { /* the info is optional; the engine's summary stays */ }
  return out;
}

function showAdapterPanel(a, b) {
  const mib = (x) => `${(x / 2 ** 20).toFixed(0)} MiB`;
  const yes = (x) => (x ? "yes" : "no");
  const rows = [
    ["name", a.name || "(not given)"],
    ["vendor / architecture", [b.info.vendor, b.info.architecture].filter(Boolean).join(" / ") || "(not given)"],
    ["description", b.info.description || "(not given)"],
    ["fallback (software) adapter", b.info.isFallbackAdapter === undefined ? "(not given)" : yes(b.info.isFallbackAdapter)],
    ["backend, type", `${a.backend}, ${a.device_type}`],
    ["max storage buffer binding", mib(a.max_storage_buffer_binding_size)],
    ["max buffer size", mib(a.max_buffer_size)],
    ["max workgroups per dimension", a.max_compute_workgroups_per_dimension],
    ["max invocations per workgroup", a.max_compute_invocations_per_workgroup],
    ["workgroup storage", `${a.max_compute_workgroup_storage_size} bytes`],
    ["shader-f16", yes(a.shader_f16)],
    ["subgroups", a.subgroups ? `yes (min size ${a.subgroup_min_size})` : (b.features.includes("subgroups") ? "offered by the browser, not by wgpu's WebGPU backend" : "no")],
    ["timestamp queries", yes(a.timestamp_query)],
    ["all features", b.features.join(", ") || "none"],
  ];
  const dl = $("adapter-facts");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dl.append(dt, dd);
  }
  $("adapter-panel").hidden = false;
}

function setImages(images, labels, what) {
  state.dataName = what;
  state.images = images;
  state.labels = labels;
  state.count = images.length / 3072;
  $("limit").value = Math.min(Number($("limit").value) || state.count, state.count);
  setStatus(`${state.count} images from ${what}`);
  updateRunButton();
}

function updateRunButton() {
  $("run").disabled = !(state.classifier && state.images);
  $("diff-run").disabled = !(state.classifier && state.images);
}

// ---- input files ----

async function fromCifar(bytes, limit) {
  const d = decodeCifar(bytes, limit);
  return { images: d.images, labels: d.labels };
}

async function fromPerfSamples(files) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const csv = await byName.get("y_labels.csv").text();
  const rows = csv.split(/\r?\n/).map((l) => l.trim()).filter(Boolean).map((l) => l.split(","));
  const present = rows.filter(([name]) => byName.has(name));
  if (present.length === 0) throw new Error("y_labels.csv names none of the chosen .bin files");
  const images = new Float32Array(present.length * 3072);
  const labels = new Uint8Array(present.length);
  for (const [i, [name, , label]] of present.entries()) {
    const bytes = new Uint8Array(await byName.get(name).arrayBuffer());
    if (bytes.length !== 3072) throw new Error(`${name}: ${bytes.length} bytes, a sample is 3072 (32x32x3 HWC)`);
    images.set(bytes, i * 3072); // interleaved HWC already
    labels[i] = Number(label);
  }
  return { images, labels };
}

async function fromPictures(files) {
  const canvas = new OffscreenCanvas(32, 32);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const images = new Float32Array(files.length * 3072);
  for (const [i, f] of files.entries()) {
    const bitmap = await createImageBitmap(f);
    ctx.drawImage(bitmap, 0, 0, 32, 32); // resized to the model's input
    const rgba = ctx.getImageData(0, 0, 32, 32).data;
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) images[i * 3072 + p * 3 + c] = rgba[p * 4 + c];
  }
  return { images, labels: null };
}

async function loadFiles(files) {
  files = [...files];
  try {
    const model = files.find((f) => /\.(safetensors|tflite|onnx)$/.test(f.name));
    if (model) await loadModel(new Uint8Array(await model.arrayBuffer()), model.name);
    const rest = files.filter((f) => f !== model);
    if (rest.length === 0) return;
    let d;
    if (rest.some((f) => f.name === "y_labels.csv")) d = await fromPerfSamples(rest);
    else if (rest.length === 1 && rest[0].name.endsWith(".bin")) d = await fromCifar(new Uint8Array(await rest[0].arrayBuffer()));
    else d = await fromPictures(rest.filter((f) => /^image\//.test(f.type)));
    setImages(d.images, d.labels, rest.length === 1 ? rest[0].name : `${rest.length} files`);
  } catch (e) {
    setStatus(String(e.message ?? e), true);
  }
}

// ---- drawing ----

function card(image, probs, label) {
  const el = document.createElement("div");
  el.className = "card";
  const cv = document.createElement("canvas");
  cv.width = cv.height = 32;
  const px = new ImageData(32, 32);
  for (let p = 0; p < 1024; p++) {
    for (let c = 0; c < 3; c++) px.data[p * 4 + c] = Math.max(0, Math.min(255, image[p * 3 + c]));
    px.data[p * 4 + 3] = 255;
  }
  cv.getContext("2d").putImageData(px, 0, 0);
  const order = [...probs.keys()].sort((a, b) => probs[b] - probs[a]);
  const pred = order[0];
  const info = document.createElement("div");
  info.className = "info";
  info.innerHTML = `<div class="pred">${state.names[pred]} ${(100 * probs[pred]).toFixed(1)}%</div>`;
  if (label !== null) {
    el.classList.add(pred === label ? "right" : "wrong");
    info.innerHTML += `<div class="truth">${pred === label ? "✓" : "✗"} ${state.names[label]}</div>`;
  }
  for (const k of order.slice(0, TOP)) {
    info.innerHTML += `<div class="bar"><span class="name">${state.names[k]}</span><span class="track"><span class="fill" style="width:${(100 * probs[k]).toFixed(1)}%"></span></span></div>`;
  }
  el.append(cv, info);
  return el;
}

// ---- running ----

async function run() {
  const c = state.classifier;
  const n = Math.min(Number($("limit").value) || state.count, state.count);
  if (!(n >= 1)) throw new Error("no images to run: load a dataset or pictures first");
  const batch = Math.max(1, Math.min(Number($("batch").value) || 64, c.maxBatch));
  const L = c.imageLen;
  const K = c.classes;
  const probs = new Float32Array(n * K);
  $("grid").replaceChildren();
  $("run").disabled = true;
  let correct = 0;
  let done = 0;
  // Results are recorded as batches finish (counters only: drawing a batch's
  // cards while the next one computes takes the CPU the GPU emulation needs
  // where there is no GPU); the cards are drawn once the run is over.
  const record = (m, out) => {
    probs.set(out, done * K);
    for (let i = 0; i < m; i++) {
      const p = out.subarray(i * K, (i + 1) * K);
      const label = state.labels ? state.labels[done + i] : null;
      if (label !== null && p.indexOf(Math.max(...p)) === label) correct++;
    }
    done += m;
    $("s-images").textContent = `${done}`;
    if (state.labels) $("s-acc").textContent = `${(100 * correct / done).toFixed(2)}% (${correct}/${done})`;
    setStatus(`running: ${done}/${n}…`);
  };
  const lastImages = n - Math.floor((n - 1) / batch) * batch;
  const before = n - lastImages;
  let ms = 0;
  let counted = 0;
  if (before > 0) {
    const t0 = performance.now();
    await c.classify(state.images.subarray(0, before * L), batch, record);
    ms = performance.now() - t0;
    counted = before;
    $("s-ips").textContent = (counted / (ms / 1000)).toFixed(1);
  }
  const timed = c.setProfiling(true);
  const t0 = performance.now();
  await c.classify(state.images.subarray(before * L, n * L), lastImages, record);
  const lastMs = performance.now() - t0;
  c.setProfiling(false);
  if (!timed || counted === 0) {
    ms += lastMs;
    counted += lastImages;
  }
  const imagesPerSec = counted / (ms / 1000);
  $("s-ips").textContent = imagesPerSec.toFixed(1);
  setStatus(`drawing ${n} images…`);
  await new Promise((r) => setTimeout(r, 0)); // let the page paint the status
  const frag = document.createDocumentFragment();
  for (let i = 0; i < n; i++) {
    const label = state.labels ? state.labels[i] : null;
    frag.append(card(state.images.subarray(i * L, (i + 1) * L), probs.subarray(i * K, (i + 1) * K), label));
  }
  $("grid").append(frag);
  $("run").disabled = false;
  setStatus(`done: ${n} images in batches of ${batch}`);
  const layerTimes = JSON.parse(c.layerTimes() || "[]");
  showLayerTimes(layerTimes, lastImages);
  return {
    images: n,
    probs: Array.from(probs),
    labels: state.labels ? Array.from(state.labels.subarray(0, n)) : null,
    correct: state.labels ? correct : null,
    accuracy: state.labels ? correct / n : null,
    images_per_sec: imagesPerSec,
    layer_times: layerTimes,
    kind: c.kind,
    adapter: state.adapterName,
    kernels: JSON.parse(c.kernels),
    adapter_info: JSON.parse(c.adapter),
  };
}

// GPU time per layer of the last batch, as `resnet8 bench` prints it.
function showLayerTimes(times, images) {
  const panel = $("layer-times");
  panel.hidden = times.length === 0;
  if (!times.length) return;
  const total = times.reduce((s, t) => s + t.ms, 0);
  $("layer-times-summary").textContent =
    `GPU time per layer (timestamp queries, the last batch of ${images} images): ${total.toFixed(1)} ms`;
  const table = $("layer-times-table");
  table.replaceChildren();
  const head = table.insertRow();
  for (const c of ["layer", "op", "ms", "share", ""]) head.append(Object.assign(document.createElement("th"), { textContent: c }));
  for (const t of times) {
    const row = table.insertRow();
    const share = total > 0 ? t.ms / total : 0;
    for (const v of [t.node, t.op, t.ms.toFixed(3), `${(100 * share).toFixed(1)}%`]) row.insertCell().textContent = v;
    const bar = row.insertCell();
    bar.innerHTML = `<span class="track"><span class="fill" style="width:${(100 * share).toFixed(1)}%"></span></span>`;
  }
}

// ---- the per-layer diff ----

const fmt = (x) => (x === undefined || x === null ? "absent" : x.toExponential(2));

function showDiff(d) {
  const r = d.report;
  $("diff").hidden = false;
  const v = $("diff-verdict");
  v.textContent = d.verdict;
  v.classList.toggle("bad", r.first_over_tolerance !== null);
  $("diff-summary").textContent =
    `${r.images} images of ${r.data}, ${r.graph} graph, ${r.layers.length} layers, on ${r.device}; ` +
    `tolerance ${r.tolerance}: max |d| ≤ ${r.tolerance_relative.toExponential(0)} × max(1, max |reference|); ` +
    `argmax gpu = cpu on ${r.argmax_gpu_vs_cpu}/${r.images}` +
    (r.argmax_gpu_vs_reference !== null ? `, gpu = reference on ${r.argmax_gpu_vs_reference}/${r.images}` : "") +
    (r.correct_gpu !== null ? `; labels: gpu correct on ${r.correct_gpu}/${r.images}` : "") +
    (r.reference ? `; reference ${r.reference}` : "");
  $("diff-plot").innerHTML = d.svg; // made by the library, layer names escaped
  const table = $("diff-table");
  table.replaceChildren();
  const head = table.insertRow();
  const cols = ["layer", "op", "shape", "gpu−cpu max |d|", "max rel", "mean |d|"];
  if (r.reference) cols.push("gpu−ref max |d|", "cpu−ref max |d|");
  cols.push("");
  for (const c of cols) head.append(Object.assign(document.createElement("th"), { textContent: c }));
  for (const l of r.layers) {
    const row = table.insertRow();
    const cells = [l.layer, l.op, l.shape.join("×"), fmt(l.gpu_vs_cpu.max_abs), fmt(l.gpu_vs_cpu.max_rel), fmt(l.gpu_vs_cpu.mean_abs)];
    if (r.reference) cells.push(fmt(l.gpu_vs_reference?.max_abs), fmt(l.cpu_vs_reference?.max_abs));
    const first = l.layer === r.first_over_tolerance;
    cells.push(l.within_tolerance ? "" : first ? "← first over tolerance" : "over");
    for (const [i, c] of cells.entries()) {
      const td = row.insertCell();
      td.textContent = c;
      if (i === 1) td.className = "op";
    }
    if (!l.within_tolerance) row.classList.add("over");
    if (first) row.classList.add("first");
  }
}

async function runDiff(n, perturb) {
  const c = state.classifier;
  n = Math.max(1, Math.min(n, state.count));
  setStatus(`diff: ${n} images through WebGPU and the CPU engine, every layer…`);
  $("diff-run").disabled = true;
  try {
    const L = c.imageLen;
    const request = {
      tolerance: $("tolerance").value,
      model: state.modelName,
      data: state.dataName,
      reference_name: state.reference?.name ?? null,
      adapter_name: state.adapterName,
      perturb: perturb ?? null,
    };
    const t0 = performance.now();
    const d = JSON.parse(await c.diff(state.images.slice(0, n * L), n,
                                      state.labels ? state.labels.slice(0, n) : undefined,
                                      JSON.stringify(request), state.reference?.bytes));
    showDiff(d);
    state.lastDiff = { ...d.report, adapter: { engine: JSON.parse(c.adapter), browser: state.adapterInfo } };
    setStatus(`diff done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return state.lastDiff;
  } finally {
    $("diff-run").disabled = false;
  }
}

function downloadDiff() {
  if (!state.lastDiff) return;
  const blob = new Blob([JSON.stringify(state.lastDiff, null, 2)], { type: "application/json" });
  const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: "resnet8-diff.json" });
  a.click();
  URL.revokeObjectURL(a.href);
}

async function main() {
  if (!navigator.gpu) {
    showNoGpu("navigator.gpu is not defined: WebGPU is missing or disabled in this browser.");
    return report({ error: "no WebGPU (navigator.gpu is undefined)" });
  }
  if (!(await navigator.gpu.requestAdapter())) {
    showNoGpu("navigator.gpu.requestAdapter() returned no adapter.");
    return report({ error: "no WebGPU adapter" });
  }
  await init();
  state.names = classNames();
  $("model-file").addEventListener("change", (e) => loadFiles(e.target.files));
  $("data-files").addEventListener("change", (e) => loadFiles(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); loadFiles(e.dataTransfer.files); });
  $("run").addEventListener("click", () =>
    run().catch((e) => setStatus(String(e.message ?? e), true)).finally(() => { $("run").disabled = false; }));
  $("diff-run").addEventListener("click", () =>
    runDiff(Number($("diff-images").value) || 8).catch((e) => setStatus(String(e.message ?? e), true)));
  $("diff-download").addEventListener("click", downloadDiff);
  $("reference-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    state.reference = f ? { name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) } : null;
  });
  try {
    const modelUrl = params.get("model") ?? "pkg/model.safetensors";
    let bytes = null;
    try {
      bytes = await fetchBytes(modelUrl);
    } catch (e) {
      if (params.has("model") || params.has("auto")) throw e;
      setStatus("choose a model file (resnet8 convert --model pretrainedResnet.h5 --out model.safetensors)");
    }
    if (bytes) await loadModel(bytes, modelUrl.split("/").pop());
    if (params.has("data")) {
      const url = params.get("data");
      const limit = params.has("limit") ? Number(params.get("limit")) : undefined;
      const d = await fromCifar(await fetchBytes(url), limit);
      setImages(d.images, d.labels, url.split("/").pop());
    }
    if (params.has("batch")) $("batch").value = params.get("batch");
    if (params.has("tolerance")) $("tolerance").value = params.get("tolerance");
    if (params.has("reference")) {
      const url = params.get("reference");
      state.reference = { name: url.split("/").pop(), bytes: await fetchBytes(url) };
    }
    if (params.has("diff")) {
      // ?diff&images=N: the per-layer diff of the first N images (?perturb=LAYER
      // is the check's test switch: it spoils one layer's GPU output).
      const n = Number(params.get("images") || 8);
      $("diff-images").value = n;
      if (!state.classifier || !state.images) throw new Error("?diff needs a model and ?data=");
      const diff = await runDiff(n, params.get("perturb") ?? undefined);
      await report({ diff });
    } else if (params.has("auto")) {
      // First the picture path (/png/i.png from the local server, decoded and
      // resized like dropped files), then the main run, which stays on screen.
      let pictures = null;
      const k = Number(params.get("pictures") || 0);
      if (k > 0 && state.classifier) {
        const kept = { images: state.images, labels: state.labels };
        const files = await Promise.all([...Array(k).keys()].map(async (i) => {
          const blob = await (await fetch(`/png/${i}.png`)).blob();
          return new File([blob], `${i}.png`, { type: "image/png" });
        }));
        const d = await fromPictures(files);
        setImages(d.images, d.labels, `${k} PNG files`);
        $("limit").value = k;
        const r = await run();
        pictures = { images: r.images, probs: r.probs };
        setImages(kept.images, kept.labels, "the dataset");
      }
      if (params.has("limit")) $("limit").value = params.get("limit");
      const result = await run();
      await report({ ...result, pictures });
    }
  } catch (e) {
    setStatus(String(e.message ?? e), true);
    await report({ error: String(e.message ?? e) });
  }
}

main();
