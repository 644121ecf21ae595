// Sampling: the PRNG, temperature, top-k and top-p, and stop strings.

/** xoshiro128** seeded by splitmix32 from a 32-bit seed: the documented sampling PRNG. */
function makeRandom(seed) {
  let x = seed >>> 0;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s = [split(), split(), split(), split()];
  return () => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 11);
    return result / 4294967296; // [0, 1)
  };
}
const rotl = (v, k) => (v << k) | (v >>> (32 - k));

function freshSeed() {
  const a = new Uint32Array(1);
  (scope.crypto || crypto).getRandomValues(a);
  return a[0];
}

/** The next id from logits: greedy at temperature 0, else temperature, top-k, top-p
 * (the nucleus: drop what ranks below the first p of the mass), then a draw. */
function pick(logits, banned, o, random) {
  const V = logits.length, z = Float64Array.from(logits);
  for (const id of banned) z[id] = -Infinity;
  if (!o.temperature) {
    let best = 0;
    for (let v = 1; v < V; v++) if (z[v] > z[best]) best = v;
    return best;
  }
  for (let v = 0; v < V; v++) z[v] /= o.temperature;
  if (o.topK && o.topK < V) {
    const kth = Array.from(z).sort((a, b) => b - a)[o.topK - 1];
    for (let v = 0; v < V; v++) if (z[v] < kth) z[v] = -Infinity;
  }
  const p = softmax(z);
  if (o.topP && o.topP < 1) {
    const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);
    let before = 0;
    for (const v of order) {
      const mine = p[v];
      if (before >= o.topP) p[v] = 0;
      before += mine;
    }
  }
  let total = 0;
  for (let v = 0; v < V; v++) total += p[v];
  let u = random() * total;
  for (let v = 0; v < V; v++) if (p[v] > 0 && (u -= p[v]) < 0) return v;
  return p.findLastIndex((q) => q > 0);
}

function softmax(z) {
  let max = -Infinity, sum = 0;
  for (const v of z) if (v > max) max = v;
  const p = new Float64Array(z.length);
  for (let v = 0; v < z.length; v++) sum += p[v] = Math.exp(z[v] - max);
  for (let v = 0; v < z.length; v++) p[v] /= sum;
  return p;
}

/** Text that might begin a stop string waits; the stop string itself is never shown. */
class StopMatcher {
  constructor(stops) {
    this.stops = (typeof stops === "string" ? [stops] : Array.from(stops || [])).filter(Boolean);
    this.held = "";
    this.done = false;
  }
  push(text) {
    if (this.done) return "";
    this.held += text;
    const hits = this.stops.map((s) => this.held.indexOf(s)).filter((i) => i >= 0);
    if (hits.length) {
      this.done = true;
      return this.held.slice(0, Math.min(...hits));
    }
    let keep = 0;
    for (const s of this.stops) {
      for (let n = 1; n < Math.min(s.length, this.held.length + 1); n++) {
        if (this.held.endsWith(s.slice(0, n))) keep = Math.max(keep, n);
      }
    }
    const out = this.held.slice(0, this.held.length - keep);
    this.held = this.held.slice(this.held.length - keep);
    return out;
  }
  flush() {
    const out = this.done ? "" : this.held;
    this.held = "";
    return out;
  }
}

const pause = () => new Promise((resolve) => setTimeout(resolve, 0));
const now = () => (scope.performance || Date).now();
