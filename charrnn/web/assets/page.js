// The exported page: open the model that model.js carries (in a worker where the
// browser allows one), set window.charrnnModel, and wire the generation controls and
// the views. Everything runs in this browser; the page makes no network request.
"use strict";

(function page() {
  const $ = (id) => document.getElementById(id);
  let running = null;

  /** Text shown as it comes, a screenful at a time: appended once a frame, not once a
   * piece, so a fast model cannot swamp the page (when it runs in the page itself). */
  function streamInto(node) {
    let held = "", timer = null;
    const flush = () => {
      clearTimeout(timer);
      node.appendData(held);
      [held, timer] = ["", null];
    };
    const push = (text) => {
      held += text;
      if (timer === null) timer = setTimeout(flush, 30);
    };
    return { push, flush };
  }

  function say(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  const number = (id) => ($(id).value === "" ? null : Number($(id).value));

  function describe(model) {
    const i = model.info, m = self.charrnnExport.manifest, unit = m.unit || i.unit;
    const losses = Object.entries(m.losses || {}).map(([d, v]) => `${d} ${v.toFixed(4)} nats/${unit}`);
    return `${i.cell.toUpperCase()} ${i.layers}×${i.hidden} · ${i.vocabSize} ${i.tokenizer} symbols · ` +
      `${i.dtype} weights` + (losses.length ? ` · validation: ${losses.join(", ")}` : "");
  }

  async function generate(event) {
    event.preventDefault();
    const model = window.charrnnModel;
    if (!model || running) return;
    running = new AbortController();
    const seed = $("seed").value || "\n";
    $("output-seed").textContent = seed;
    const madeText = document.createTextNode("");
    $("output-text").replaceChildren(madeText);
    const shown = streamInto(madeText);
    [$("generate").disabled, $("stop").disabled] = [true, false];
    say("Generating…");
    const started = performance.now();
    let made = 0;
    try {
      await model.generate(seed, {
        length: number("length") ?? 500,
        temperature: number("temperature") ?? 0.8,
        topK: number("top-k") || null,
        topP: number("top-p") || null,
        rngSeed: number("rng-seed"),
        stop: $("stop-text").value ? [$("stop-text").value] : [],
        signal: running.signal,
        onText(text) {
          shown.push(text);
          made += Array.from(text).length;
          $("speed").textContent = `${Math.round(made / ((performance.now() - started) / 1000))} chars/s`;
        },
      });
      shown.flush(); // all of the text is on screen before the status says so
      say(running.signal.aborted ? "Stopped." : "Done.");
    } catch (e) {
      shown.flush();
      say(running.signal.aborted ? "Stopped." : e.message, !running.signal.aborted);
    } finally {
      running = null;
      [$("generate").disabled, $("stop").disabled] = [false, true];
    }
  }

  async function start() {
    const views = [
      charrnnViews.surprisal($("surprisal-view"), () => window.charrnnModel),
      charrnnViews.neurons($("neurons-view"), () => window.charrnnModel),
    ];
    $("controls").addEventListener("submit", generate);
    $("stop").addEventListener("click", () => running && running.abort());
    try {
      const model = await charrnn.openExport(self.charrnnExport);
      window.charrnnModel = model;
      $("title").textContent = `charrnn: ${self.charrnnExport.manifest.name}`;
      $("model-card").textContent = describe(model);
      $("generate").disabled = false;
      views.forEach((v) => v && v.refresh && v.refresh());
      say(`Ready (running in the ${model.info.runsIn}).`);
      document.dispatchEvent(new CustomEvent("charrnn-ready", { detail: model }));
    } catch (e) {
      say(`Cannot open the model: ${e.message}`, true);
    }
  }

  start();
})();
