// The weights: bytes packed in a script, and float16 and int8 back to float32.

/** The bytes packed by charrnn/export/pack.py: each UTF-16 unit holds 15 bits. */
function unpackText(text, byteLength) {
  const out = new Uint8Array(byteLength);
  let acc = 0, bits = 0, n = 0;
  for (let i = 0; i < text.length && n < byteLength; i++) {
    acc = (acc << 15) | (text.charCodeAt(i) - PACK_BASE);
    bits += 15;
    while (bits >= 8 && n < byteLength) {
      bits -= 8;
      out[n++] = (acc >>> bits) & 255;
    }
    acc &= (1 << bits) - 1;
  }
  if (n !== byteLength) throw new CharrnnError("the weights are cut short");
  return out;
}

function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 31, frac = h & 1023;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** A tensor of the manifest as float32, dequantised exactly as export/weights.py does. */
function readTensor(bytes, t) {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  if (t.dtype === "f32") {
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(t.offset + 4 * i, true);
  } else if (t.dtype === "f16") {
    for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(t.offset + 2 * i, true));
  } else if (t.dtype === "i8") {
    const cols = t.shape[t.shape.length - 1];
    for (let r = 0; r < count / cols; r++) {
      const scale = view.getFloat32(t.scales + 4 * r, true);
      for (let c = 0; c < cols; c++) out[r * cols + c] = view.getInt8(t.offset + r * cols + c) * scale;
    }
  } else {
    throw new CharrnnError(`unknown weight type ${t.dtype}`);
  }
  return out;
}
