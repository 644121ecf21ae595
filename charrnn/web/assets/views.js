/* charrnn "a look inside" views: surprisal and neurons. Classic script, no dependencies.
   Defines window.charrnnViews = { surprisal(container, getModel), neurons(container, getModel) }. */
(function () {
  "use strict";

  var MAX_NATS = 6;
  var GATES = { input: 1, forget: 1, output: 1, reset: 1, update: 1 };

  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (c) {
      if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  function visible(s) {
    return String(s).replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }
  function oneLine(err) {
    var s = err && err.message ? err.message : String(err);
    return s.split("\n")[0] || "Something went wrong.";
  }
  function signed(x, d) { return (x >= 0 ? "+" : "-") + Math.abs(x).toFixed(d); }
  function current(getModel) {
    var m = null;
    try { m = getModel(); } catch (e) { m = null; }
    if (!m || !m.info) throw new Error("No model is loaded yet.");
    return m;
  }
  // An error line (class "error", role=alert) that a view shows instead of throwing.
  function errorLine() {
    var p = el("p", { cls: "error cv-error", role: "alert" });
    p.hidden = true;
    return {
      node: p,
      show: function (e) { p.textContent = oneLine(e); p.hidden = false; },
      clear: function () { p.textContent = ""; p.hidden = true; }
    };
  }
  // One <span data-index> per piece, sliced from `text` by the pieces' [start, end) UTF-16 indices.
  function renderPieces(out, text, pieces, decorate) {
    var frag = document.createDocumentFragment(), pos = 0;
    pieces.forEach(function (p, i) {
      var s = Math.max(p.start, pos), e = Math.max(p.end, s);
      if (s > pos) frag.appendChild(document.createTextNode(text.slice(pos, s)));
      var t = text.slice(s, e), span = el("span", { "data-index": String(i) });
      span.textContent = t;
      if (t.indexOf("\n") >= 0 && !t.trim()) span.className = "cv-nl";
      decorate(span, i, p);
      frag.appendChild(span);
      pos = e;
    });
    if (pos < text.length) frag.appendChild(document.createTextNode(text.slice(pos)));
    out.textContent = "";
    out.appendChild(frag);
  }
  function heat(nats) {
    var a = Math.min(Math.max(nats / MAX_NATS, 0), 1);
    return "hsla(" + Math.round(48 - 48 * a) + ",100%,50%," + (0.88 * a).toFixed(3) + ")";
  }
  // t in [-1, 1]: blue below zero, red above.
  function diverge(t) {
    t = Math.min(Math.max(t, -1), 1);
    return (t < 0 ? "rgba(40,100,235," : "rgba(225,45,35,") + (0.85 * Math.abs(t)).toFixed(3) + ")";
  }
  function legend(stops, labels, caption) {
    var bar = el("span", { cls: "cv-legend-bar" });
    bar.style.background = "linear-gradient(to right," + stops.join(",") + ")";
    return el("div", { cls: "cv-legend" }, [caption ? el("span", { cls: "cv-legend-cap", text: caption }) : null,
      el("span", { cls: "cv-legend-scale" }, [bar, el("span", { cls: "cv-legend-labels" },
        labels.map(function (l) { return el("span", { text: l }); }))])]);
  }
  function runner(button, fn) { // runs fn on click / Ctrl+Enter; ignores stale results via a sequence number
    var seq = 0;
    return function () {
      var mine = ++seq;
      button.disabled = true;
      return Promise.resolve().then(function () { return fn(function () { return mine === seq; }); })
        .catch(function (e) { if (mine === seq) throw e; }).finally(function () { if (mine === seq) button.disabled = false; });
    };
  }
  function ctrlEnter(textarea, go) {
    textarea.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); go(); }
    });
  }

  function surprisal(container, getModel) {
    var text = el("textarea", { id: "surprisal-text", rows: "5", spellcheck: "false", cls: "cv-text",
      placeholder: "Type or paste text, then press Score (Ctrl+Enter)" });
    var run = el("button", { id: "surprisal-run", type: "button", cls: "cv-button", text: "Score" });
    var total = el("p", { id: "surprisal-total", cls: "cv-total", "aria-live": "polite" });
    var out = el("div", { id: "surprisal-output", cls: "cv-out" });
    var tip = el("div", { id: "surprisal-tip", cls: "cv-tip", role: "tooltip" });
    var err = errorLine(), last = null;
    var stops = [0, 1, 2, 3, 4, 5, 6].map(heat);
    tip.hidden = true;
    container.appendChild(el("div", { cls: "cv cv-surprisal" }, [
      el("label", { "for": "surprisal-text", cls: "cv-label", text: "Text to score" }), text,
      el("div", { cls: "cv-row" }, [run, legend(stops, ["0", "2", "4", "6+ nats"], "surprisal")]),
      err.node, total, out, tip]));

    var go = runner(run, function (fresh) {
      err.clear();
      var m = current(getModel), s = text.value;
      if (!s) throw new Error("Enter some text to score first.");
      out.setAttribute("aria-busy", "true");
      return m.score(s, { top: 5 }).then(function (res) {
        if (!fresh()) return;
        last = res;
        // `shown`: the piece's nats with those of the bytes before it inside the same
        // character (the runtime folds them), so the colour counts every byte
        renderPieces(out, res.text, res.pieces, function (span, i, p) {
          span.tabIndex = 0;
          if (p.shown == null) return;
          span.setAttribute("data-nats", String(p.shown));
          span.style.backgroundColor = heat(p.shown);
        });
        var line = res.natsPerChar.toFixed(4) + " nats/char \u00b7 " + (res.natsPerChar / Math.LN2).toFixed(4) +
          " bits/char \u00b7 " + res.characters + " characters";
        if (m.info.tokenizer && m.info.tokenizer !== "char")
          line += " \u00b7 " + res.natsPerToken.toFixed(4) + " nats/token \u00b7 " + res.tokens + " tokens";
        total.textContent = line;
        total.setAttribute("data-nats-per-char", String(res.natsPerChar));
        total.setAttribute("data-nats-per-token", String(res.natsPerToken));
      });
    });
    function clear() {
      last = null; tip.hidden = true; out.textContent = ""; total.textContent = "";
      total.removeAttribute("data-nats-per-char"); total.removeAttribute("data-nats-per-token");
    }
    function start() {
      go().catch(function (e) { clear(); err.show(e); }).finally(function () { out.removeAttribute("aria-busy"); });
    }
    run.addEventListener("click", start);
    ctrlEnter(text, start);

    function showTip(span) {
      var p = last && last.pieces[+span.getAttribute("data-index")];
      if (!p) return;
      var kids = [el("div", { cls: "cv-tip-piece", text: visible(p.text) })];
      if (p.nats == null) kids.push(el("div", { cls: "cv-tip-nats", text: "first piece: nothing to predict it from" }));
      else {
        var nats = p.shown == null ? p.nats : p.shown;
        kids.push(el("div", { cls: "cv-tip-nats", text: nats.toFixed(3) + " nats \u00b7 " + (nats / Math.LN2).toFixed(3) + " bits" }));
      }
      if (p.top && p.top.length) {
        kids.push(el("div", { cls: "cv-tip-head", text: "the model expected" }));
        kids.push(el("ol", { cls: "cv-preds" }, p.top.map(function (q) {
          var bar = el("span", { cls: "cv-pred-bar" });
          bar.style.width = Math.max(1, Math.round(q.p * 60)) + "px";
          return el("li", { cls: "cv-pred" + (q.text === p.text ? " cv-hit" : "") }, [
            el("span", { cls: "cv-pred-text", text: visible(q.text) }), bar,
            el("span", { cls: "cv-pred-p", text: (q.p * 100).toFixed(1) + "%" })]);
        })));
      }
      tip.textContent = "";
      kids.forEach(function (k) { tip.appendChild(k); });
      tip.hidden = false;
      var r = span.getBoundingClientRect(), w = tip.offsetWidth, h = tip.offsetHeight;
      var top = r.bottom + 6 + h > window.innerHeight ? r.top - h - 6 : r.bottom + 6;
      tip.style.left = Math.max(4, Math.min(r.left, window.innerWidth - w - 8)) + "px";
      tip.style.top = Math.max(4, top) + "px";
    }
    function pieceOf(e) {
      var s = e.target && e.target.closest ? e.target.closest("span[data-index]") : null;
      return s && out.contains(s) ? s : null;
    }
    function hide() { tip.hidden = true; }
    out.addEventListener("mouseover", function (e) { var s = pieceOf(e); if (s) showTip(s); });
    out.addEventListener("mouseout", function (e) {
      if (!e.relatedTarget || !out.contains(e.relatedTarget) || !pieceOf({ target: e.relatedTarget })) hide();
    });
    out.addEventListener("focusin", function (e) { var s = pieceOf(e); if (s) showTip(s); });
    out.addEventListener("focusout", hide);
    out.addEventListener("keydown", function (e) { if (e.key === "Escape") hide(); });
    window.addEventListener("scroll", hide, true);
    return { refresh: function () { clear(); err.clear(); } };
  }

  // 0/1 per piece: 1 where the piece's [start, end) overlaps a match of `re` (flags "gu") in `text`.
  function targets(text, pieces, re) {
    var mark = new Uint8Array(text.length + 1), pre = new Int32Array(text.length + 2), k;
    for (var mt of text.matchAll(re)) {
      var s = mt.index, e = Math.max(s + mt[0].length, s + 1);
      for (k = s; k < e && k <= text.length; k++) mark[k] = 1;
    }
    for (k = 0; k <= text.length; k++) pre[k + 1] = pre[k] + mark[k];
    return pieces.map(function (p) {
      var e = Math.max(p.end, p.start + 1);
      return pre[Math.min(e, text.length + 1)] - pre[p.start] > 0 ? 1 : 0;
    });
  }
  // Pearson r of every unit with y over all pieces; zero-variance units get r = 0.
  function correlate(values, y, units) {
    var n = values.length, my = 0, syy = 0, i, u, v, d, dy;
    var mean = new Float64Array(units), sxx = new Float64Array(units), sxy = new Float64Array(units);
    for (i = 0; i < n; i++) { my += y[i]; v = values[i]; for (u = 0; u < units; u++) mean[u] += v[u]; }
    my /= n;
    for (u = 0; u < units; u++) mean[u] /= n;
    for (i = 0; i < n; i++) {
      v = values[i]; dy = y[i] - my; syy += dy * dy;
      for (u = 0; u < units; u++) { d = v[u] - mean[u]; sxx[u] += d * d; sxy[u] += d * dy; }
    }
    var r = new Float64Array(units);
    for (u = 0; u < units; u++) {
      if (syy > 0 && sxx[u] > n * 1e-20 * (1 + mean[u] * mean[u]))
        r[u] = Math.max(-1, Math.min(1, sxy[u] / Math.sqrt(sxx[u] * syy)));
    }
    return r;
  }

  function neurons(container, getModel) {
    var layer = el("select", { id: "neurons-layer", cls: "cv-select" });
    var kind = el("select", { id: "neurons-kind", cls: "cv-select" });
    var unit = el("input", { id: "neurons-unit", type: "number", min: "0", step: "1", value: "0", cls: "cv-num" });
    var text = el("textarea", { id: "neurons-text", rows: "5", spellcheck: "false", cls: "cv-text",
      placeholder: "Text to run through the model" });
    var run = el("button", { id: "neurons-run", type: "button", cls: "cv-button", text: "Show" });
    var pattern = el("input", { id: "neurons-pattern", type: "text", cls: "cv-pattern", placeholder: "\"[^\"]*\"",
      spellcheck: "false", "aria-label": "Pattern (JavaScript regular expression)" });
    var search = el("button", { id: "neurons-search", type: "button", cls: "cv-button", text: "Find units" });
    var ranking = el("ol", { id: "neurons-ranking", cls: "cv-ranking" });
    var note = el("p", { cls: "cv-note", role: "status" });
    var head = el("div", { cls: "cv-neurons-head" });
    var out = el("div", { id: "neurons-output", cls: "cv-out" });
    var err = errorLine(), synced = null, cache = new Map();
    function field(label, input) { return el("label", { cls: "cv-field" }, [el("span", { text: label }), input]); }
    container.appendChild(el("div", { cls: "cv cv-neurons" }, [
      el("div", { cls: "cv-row" }, [field("Layer", layer), field("Kind", kind), field("Unit", unit)]),
      el("label", { "for": "neurons-text", cls: "cv-label", text: "Text" }), text,
      el("div", { cls: "cv-row" }, [run, field("Pattern", pattern), search]),
      err.node, note, ranking, head, out]));

    function sync(force) { // (re)build the selects when the model changes
      var m = current(getModel);
      if (m === synced && !force) return m;
      var info = m.info, kinds = info.kinds && info.kinds.length ? info.kinds : ["hidden"];
      var keepL = layer.value, keepK = kind.value;
      synced = m; cache.clear();
      layer.textContent = ""; kind.textContent = "";
      for (var l = 0; l < info.layers; l++) layer.appendChild(el("option", { value: String(l), text: "layer " + (l + 1) }));
      kinds.forEach(function (k) { kind.appendChild(el("option", { value: k, text: k })); });
      layer.value = keepL !== "" && +keepL < info.layers ? keepL : String(info.layers - 1);
      kind.value = kinds.indexOf(keepK) >= 0 ? keepK : kinds[0];
      unit.max = String(info.hidden - 1);
      if (+unit.value > info.hidden - 1) unit.value = String(info.hidden - 1);
      return m;
    }
    function params() {
      var m = sync(false), u = Number(unit.value), s = text.value;
      if (!s) throw new Error("Enter some text first.");
      if (!Number.isInteger(u) || u < 0 || u >= m.info.hidden)
        throw new Error("Unit must be a whole number from 0 to " + (m.info.hidden - 1) + ".");
      return { m: m, text: s, layer: +layer.value, kind: kind.value, unit: u };
    }
    function trace(q) { // cached per (model, text, layer, kind); a failed trace is not cached
      var key = q.layer + "\u0000" + q.kind + "\u0000" + q.text, p = cache.get(key);
      if (!p) {
        p = q.m.trace(q.text, { layer: q.layer, kind: q.kind });
        cache.set(key, p);
        p.catch(function () { cache.delete(key); });
        if (cache.size > 8) cache.delete(cache.keys().next().value);
      }
      return p;
    }
    function paint(q, res) {
      var lo = -1, hi = 1, u = q.unit;
      if (GATES[q.kind]) lo = 0;
      else if (q.kind === "cell" && q.m.info.cell === "lstm") {
        hi = 0;
        res.values.forEach(function (v) { hi = Math.max(hi, Math.abs(v[u])); });
        hi = hi || 1; lo = -hi;
      }
      var mid = (lo + hi) / 2, half = (hi - lo) / 2, f = function (x) { return +x.toFixed(3) + ""; };
      renderPieces(out, res.text, res.pieces, function (span, i) {
        var v = res.values[i][u];
        span.setAttribute("data-value", String(v));
        span.title = visible(res.pieces[i].text) + "  " + v.toFixed(4);
        span.style.backgroundColor = diverge((v - mid) / half);
      });
      head.textContent = "";
      head.appendChild(legend([diverge(-1), diverge(0), diverge(1)], [f(lo), f(mid), f(hi)],
        "layer " + (q.layer + 1) + " \u00b7 " + q.kind + " \u00b7 unit " + u));
    }
    var show = runner(run, function (fresh) {
      err.clear();
      var q = params();
      return trace(q).then(function (res) { if (fresh()) paint(q, res); });
    });
    var find = runner(search, function (fresh) {
      err.clear(); note.textContent = ""; ranking.textContent = "";
      var re, q = params();
      try { re = new RegExp(pattern.value || pattern.placeholder, "gu"); } catch (e) {
        throw new Error("Invalid pattern: " + oneLine(e));
      }
      return trace(q).then(function (res) {
        if (!fresh()) return;
        var y = targets(res.text, res.pieces, re), hits = y.reduce(function (a, b) { return a + b; }, 0);
        if (hits === 0 || hits === y.length) {
          note.textContent = hits ? "The pattern covers every piece, so there is nothing to correlate with." :
            "The pattern matches nothing in the text.";
          return;
        }
        var units = res.units || res.values[0].length, r = correlate(res.values, y, units), order = [];
        for (var u = 0; u < units; u++) order.push(u);
        order.sort(function (a, b) { return Math.abs(r[b]) - Math.abs(r[a]) || a - b; });
        note.textContent = hits + " of " + y.length + " pieces match; units most correlated with the match:";
        order.slice(0, 10).forEach(function (u) {
          ranking.appendChild(el("li", { cls: "neurons-hit", "data-unit": String(u), "data-r": String(r[u]),
            tabindex: "0", role: "button" }, [el("span", { cls: "cv-unit", text: "unit " + u }), " ",
            el("span", { cls: "cv-r", text: "r = " + signed(r[u], 2) })]));
        });
      });
    });
    function pick(e) {
      var row = e.target.closest ? e.target.closest(".neurons-hit") : null;
      if (!row || (e.type === "keydown" && e.key !== "Enter" && e.key !== " ")) return;
      e.preventDefault();
      unit.value = row.getAttribute("data-unit");
      start(show);
    }
    function start(fn) { fn().catch(function (e) { err.show(e); }); }
    ranking.addEventListener("click", pick);
    ranking.addEventListener("keydown", pick);
    run.addEventListener("click", function () { start(show); });
    search.addEventListener("click", function () { start(find); });
    pattern.addEventListener("keydown", function (e) { if (e.key === "Enter") start(find); });
    ctrlEnter(text, function () { start(show); });
    unit.addEventListener("change", function () { if (out.firstChild) start(show); });
    [layer, kind].forEach(function (s) { s.addEventListener("change", function () { if (out.firstChild) start(show); }); });
    container.addEventListener("focusin", function () { try { sync(false); } catch (e) { /* no model yet */ } });
    try { sync(false); } catch (e) { /* the runtime calls refresh() once a model is loaded */ }
    return {
      refresh: function () {
        err.clear(); note.textContent = ""; ranking.textContent = ""; head.textContent = ""; out.textContent = "";
        try { sync(true); } catch (e) { err.show(e); }
      }
    };
  }

  window.charrnnViews = { surprisal: surprisal, neurons: neurons };
})();
