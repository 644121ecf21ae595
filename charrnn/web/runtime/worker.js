// The model in a Web Worker, and the choice between a worker and the page.

/** In a worker: open the model it is sent, then answer calls, streaming generate's text. */
function serveWorker(port) {
  let model = null;
  const running = new Map();
  port.onmessage = async ({ data }) => {
    const { op, id } = data;
    if (op === "abort") return running.get(id) && running.get(id).abort();
    try {
      if (op === "open") {
        model = await open(data.manifest, data.bytes, data.options);
        return port.postMessage({ id, result: model.info });
      }
      const [first, options = {}] = data.args, abort = new AbortController();
      running.set(id, abort);
      const extra = { signal: abort.signal }, text = new HeldText((t) => port.postMessage({ id, text: t }));
      if (data.method === "generate") extra.onText = (t) => text.push(t);
      const result = await model[data.method](first, { ...options, ...extra });
      text.flush();
      port.postMessage({ id, result });
    } catch (e) {
      port.postMessage({ id, error: e.message || String(e) });
    } finally {
      running.delete(id);
    }
  };
}

/** Generated text handed on at most every FLUSH_MS: a small model makes 10^5 pieces a
 * second, and a message for each would flood the page until it could not take a click. */
class HeldText {
  constructor(send) {
    [this.send, this.held, this.sent] = [send, "", now()];
  }
  push(text) {
    this.held += text;
    if (now() - this.sent > FLUSH_MS) this.flush();
  }
  flush() {
    if (this.held) this.send(this.held);
    [this.held, this.sent] = ["", now()];
  }
}

/** The Model's API, run in a Web Worker so the page stays responsive. */
class WorkerModel {
  constructor(worker) {
    this.worker = worker;
    this.calls = new Map();
    this.next = 0;
    worker.onmessage = ({ data }) => {
      const call = this.calls.get(data.id);
      if (!call) return;
      if (data.text !== undefined) return call.onText && call.onText(data.text);
      this.calls.delete(data.id);
      if (data.error !== undefined) call.reject(Object.assign(new CharrnnError(data.error), { answered: true }));
      else call.resolve(data.result);
    };
    worker.onerror = (event) => {
      event.preventDefault();
      for (const call of this.calls.values()) call.reject(new CharrnnError(event.message || "the worker failed"));
      this.calls.clear();
    };
  }
  call(message, onText, signal, transfer = []) {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject, onText });
      this.worker.postMessage({ ...message, id }, transfer);
      const abort = () => this.worker.postMessage({ op: "abort", id });
      if (signal && signal.aborted) abort();
      else if (signal) signal.addEventListener("abort", abort, { once: true });
    });
  }
  async open(manifest, bytes, options) {
    const message = { op: "open", manifest, bytes, options };
    this.info = { ...(await this.call(message, null, null, [bytes.buffer])), runsIn: "worker" };
    return this;
  }
  method(name, first, options = {}) {
    const { onText, signal, ...rest } = options;
    return this.call({ op: "call", method: name, args: [first, rest] }, onText, signal);
  }
  generate(seed, options) { return this.method("generate", seed, options); }
  score(text, options) { return this.method("score", text, options); }
  trace(text, options) { return this.method("trace", text, options); }
}

/** A worker made from this runtime's own source: a blob URL, which Chromium allows
 * from file:// where a worker script file would be refused. */
function makeWorker() {
  const source = `"use strict";\n${charrnnRuntime.toString()}\ncharrnnRuntime(self);\nself.charrnn.serveWorker(self);\n`;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  try {
    return new Worker(url);
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
}

/** The model in a worker where the browser allows one, else in the page (which then
 * gives the event loop a turn every YIELD_MS, so Stop still works). */
async function openAnywhere(manifest, bytes, options = {}) {
  const { worker = true, ...modelOptions } = options;
  if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
  if (worker && typeof Worker !== "undefined") {
    let made = null;
    try {
      made = makeWorker();
      return await new WorkerModel(made).open(manifest, bytes.slice(), modelOptions);
    } catch (e) {
      if (made) made.terminate();
      if (e.answered) throw e; // the worker ran and the model itself is bad
      if (scope.console) console.warn(`charrnn: no worker (${e.message}); running in the page`);
    }
  }
  return open(manifest, bytes, modelOptions);
}

/** The model an exported model.js carries ({manifest, weights}), in a worker if it can. */
function openExport(data, options) {
  if (!data || !data.manifest) throw new CharrnnError("no model: model.js is missing or damaged");
  return openAnywhere(data.manifest, unpackText(data.weights, data.manifest.bytes), options);
}

scope.charrnn = {
  Model, CharrnnError, open, openAnywhere, openExport, serveWorker, unpackText, makeRandom, prepare, KINDS,
};
