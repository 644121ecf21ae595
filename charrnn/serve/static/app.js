// The charrnn playground: pick a model, type a seed, stream a completion from
// POST /v1/completions (Server-Sent Events read with fetch and a stream reader).
// Stop aborts the fetch; the server sees the connection close and drops the stream.
// The surprisal and neuron views run the model in the page (see openInside).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], controller: null, inside: new Map(), views: [] };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || sessionStorage.getItem("charrnn-key");
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (response.status === 401) {
    $("key-field").hidden = false;
    $("api-key").focus();
  }
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : response.statusText;
  } catch {
    return response.statusText;
  }
}

function describe(model) {
  const c = model.charrnn || {};
  const bits = c.best_val_bits == null ? "no validation yet" : `${c.best_val_bits.toFixed(3)} bits/${c.unit}`;
  return `${bits} · ${c.vocab_size} symbols (${c.tokenizer}) · ${c.cell} ${c.layers}×${c.hidden} · step ${c.steps}`;
}

async function loadModels() {
  for (let attempt = 0; attempt < 60; attempt++) {
    const response = await api("/v1/models");
    if (response.ok) {
      state.models = (await response.json()).data;
      break;
    }
    if (response.status !== 503) {
      say(`Cannot list models: ${await errorText(response)}`, true);
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const select = $("model");
  select.replaceChildren(
    ...state.models.map((m) => new Option(`${m.id} (${describe(m).split(" · ")[0]})`, m.id)),
  );
  say(`${state.models.length} model(s) ready.`);
  showModel();
}

function chosenModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function showModel() {
  const model = chosenModel();
  if (!model) return;
  $("model-card").textContent = describe(model);
  drawCurve(model);
  openInside(model);
}

// The views inside the model run the browser runtime (charrnn/web) on the model's own
// weights, as `charrnn export` pages do, from the same files. The weights are fetched
// when a view first asks for them, once per model: a page only generating never does.
function openInside(model) {
  const c = model.charrnn || {};
  const loaded = () => {
    if (!state.inside.has(model.id)) state.inside.set(model.id, fetchInside(model));
    return state.inside.get(model.id);
  };
  const call = (method) => (first, options) => loaded().then((m) => m[method](first, options));
  window.charrnnModel = {
    info: {
      name: model.id, cell: c.cell, layers: c.layers, hidden: c.hidden, vocabSize: c.vocab_size,
      tokenizer: c.tokenizer, unit: c.unit, kinds: charrnn.KINDS[c.cell] || ["hidden"],
    },
    generate: call("generate"), score: call("score"), trace: call("trace"),
  };
  $("inside-status").textContent = "The model's weights load into this page when a view first needs them.";
  $("inside-status").classList.remove("error");
  state.views.forEach((view) => view && view.refresh && view.refresh());
}

async function fetchInside(model) {
  const note = $("inside-status");
  note.textContent = "Loading the model into this page…";
  try {
    const base = `/v1/models/${encodeURIComponent(model.id)}/web`;
    const [manifest, weights] = await Promise.all([api(`${base}/manifest`), api(`${base}/weights`)]);
    if (!manifest.ok) throw new Error(await errorText(manifest));
    if (!weights.ok) throw new Error(await errorText(weights));
    const opened = await charrnn.openAnywhere(await manifest.json(), await weights.arrayBuffer());
    note.textContent = `The model runs in this page (${opened.info.runsIn}, ${opened.info.kernel}) for these views.`;
    return opened;
  } catch (e) {
    state.inside.delete(model.id); // the next try asks again
    note.textContent = `The views cannot run this model: ${e.message}`;
    note.classList.add("error");
    throw e;
  }
}

async function drawCurve(model) {
  const svg = $("curve");
  svg.replaceChildren();
  const response = await api(`/v1/models/${encodeURIComponent(model.id)}/loss_curve`);
  if (!response.ok) return;
  const curve = await response.json();
  const all = [...curve.train, ...curve.val];
  if (all.length === 0) {
    svg.append(text(300, 120, "no metrics.jsonl for this model", "middle"));
    return;
  }
  const [W, H, left, bottom, top, right] = [600, 240, 48, 28, 12, 12];
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys, Math.min(...ys) + 1e-6)];
  const px = (x) => left + ((x - x0) / (x1 - x0)) * (W - left - right);
  const py = (y) => H - bottom - ((y - y0) / (y1 - y0)) * (H - top - bottom);
  svg.append(line(left, H - bottom, W - right, H - bottom), line(left, top, left, H - bottom));
  svg.append(text(left - 4, py(y1) + 4, y1.toFixed(2), "end"), text(left - 4, py(y0), y0.toFixed(2), "end"));
  svg.append(text(px(x0), H - 8, `step ${x0}`, "start"), text(px(x1), H - 8, `${x1}`, "end"));
  for (const [name, points] of [["train", curve.train], ["val", curve.val]]) {
    if (points.length === 0) continue;
    const path = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    path.setAttribute("class", name);
    path.setAttribute("points", points.map((p) => `${px(p[0])},${py(p[1])}`).join(" "));
    svg.append(path);
  }
  svg.append(text(W - right, top + 10, `train (blue), validation (orange), nats/${curve.unit}`, "end"));
}

function line(x1, y1, x2, y2) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "line");
  Object.entries({ x1, y1, x2, y2, class: "axis" }).forEach(([k, v]) => el.setAttribute(k, v));
  return el;
}

function text(x, y, content, anchor) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", "text");
  Object.entries({ x, y, "text-anchor": anchor }).forEach(([k, v]) => el.setAttribute(k, v));
  el.textContent = content;
  return el;
}

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
  $("copy").disabled = running || $("output").textContent === "";
}

async function generate(event) {
  if (event) event.preventDefault();
  if (state.controller || !chosenModel()) return;
  const seed = $("seed").value;
  const output = $("output");
  const seedSpan = document.createElement("span");
  seedSpan.className = "seed";
  seedSpan.textContent = seed;
  const made = document.createTextNode("");
  output.replaceChildren(seedSpan, made);
  state.controller = new AbortController();
  setRunning(true);
  say("Generating…");
  const topP = Number($("top-p").value);
  const request = {
    model: chosenModel().id,
    prompt: seed,
    max_tokens: Number($("length").value),
    temperature: Number($("temperature").value),
    top_p: topP,
    stream: true,
  };
  try {
    const response = await api("/v1/completions", {
      method: "POST",
      body: JSON.stringify(request),
      signal: state.controller.signal,
    });
    if (!response.ok) {
      say(`Refused: ${await errorText(response)}`, true);
      return;
    }
    const finish = await readEvents(response, (piece) => {
      made.appendData(piece);
      output.scrollTop = output.scrollHeight;
    });
    say(finish === "stop" ? "Done (a stop string)." : "Done.");
  } catch (e) {
    say(e.name === "AbortError" ? "Stopped." : `Failed: ${e.message}`, e.name !== "AbortError");
  } finally {
    state.controller = null;
    setRunning(false);
  }
}

// Reads `data: {...}` events until `data: [DONE]`; returns the finish reason.
async function readEvents(response, onText) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return finish;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const row of event.split("\n")) {
        if (!row.startsWith("data: ")) continue;
        const data = row.slice(6);
        if (data === "[DONE]") return finish;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) {
          if (choice.text) onText(choice.text);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

async function copy() {
  const text = $("output").textContent;
  try {
    await navigator.clipboard.writeText(text);
    say("Copied.");
  } catch {
    say("The browser refused the clipboard; select the text instead.", true);
  }
}

function bindSlider(id) {
  const show = () => { $(`${id}-value`).textContent = $(id).value; };
  $(id).addEventListener("input", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  ["temperature", "top-p", "length"].forEach(bindSlider);
  state.views = [
    charrnnViews.surprisal($("surprisal-view"), () => window.charrnnModel),
    charrnnViews.neurons($("neurons-view"), () => window.charrnnModel),
  ];
  $("controls").addEventListener("submit", generate);
  $("stop").addEventListener("click", stop);
  $("copy").addEventListener("click", copy);
  $("model").addEventListener("change", showModel);
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem("charrnn-key", $("api-key").value);
    loadModels();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest(".cv")) return; // the views' own keys
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate(e);
    if (e.key === "Escape") stop();
  });
  loadModels();
});
