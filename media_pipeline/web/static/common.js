"use strict";
// Shared by the console's scripts: element helpers, the API client (with the operator key when
// one was given), BlurHash drawing and the photo cards. Talks only to the v1 API and image URLs.

const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  const el = $("status");
  el.dataset.status = state;
  el.textContent = text;
}

// h("a", {href: "#x", class: "card"}, child, "text"): an element with attributes and children.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// ---- The API: the operator key (kept for this tab only) goes with every request once given.
const KEY_STORE = "mp-operator-key";

class ApiError extends Error {
  constructor(status, code, message) { super(`${status} ${code}: ${message}`); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  const headers = Object.assign({}, options.headers || {}, key ? { Authorization: `Bearer ${key}` } : {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) askForKey(body.error.message);
    throw new ApiError(response.status, body.error.code, body.error.message);
  }
  return { status: response.status, body };
}

function askForKey(why) {
  $("key-form").classList.remove("hidden");
  $("key-why").textContent = why;
  $("operator-key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("operator-key").value.trim());
  $("operator-key").value = "";
  $("key-form").classList.add("hidden");
  window.dispatchEvent(new HashChangeEvent("hashchange"));
});

const when = (rfc3339) => rfc3339.replace("T", " ").replace(/\.\d+Z$/, " UTC");

// ---- BlurHash decoding (https://blurha.sh), drawn into the placeholder canvas.
const B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
const decode83 = (s) => [...s].reduce((v, c) => v * 83 + B83.indexOf(c), 0);
const toLinear = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
const toSrgb = (v) => { v = Math.max(0, Math.min(1, v)); return Math.round(v <= 0.0031308 ? v * 12.92 * 255 : (1.055 * Math.pow(v, 1 / 2.4) - 0.055) * 255); };
const signPow = (v, e) => Math.sign(v) * Math.pow(Math.abs(v), e);

function drawBlurhash(hash, canvas) {
  const size = decode83(hash[0]);
  const nx = (size % 9) + 1, ny = Math.floor(size / 9) + 1;
  const maxValue = (decode83(hash[1]) + 1) / 166;
  const colours = [];
  for (let i = 0; i < nx * ny; i++) {
    if (i === 0) {
      const v = decode83(hash.substring(2, 6));
      colours.push([toLinear(v >> 16), toLinear((v >> 8) & 255), toLinear(v & 255)]);
    } else {
      const v = decode83(hash.substring(4 + i * 2, 6 + i * 2));
      colours.push([Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19].map((q) => signPow((q - 9) / 9, 2) * maxValue));
    }
  }
  const w = canvas.width, h = canvas.height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / w) * Math.cos((Math.PI * y * j) / h);
          const c = colours[i + j * nx];
          r += c[0] * basis; g += c[1] * basis; b += c[2] * basis;
        }
      }
      const p = 4 * (x + y * w);
      img.data[p] = toSrgb(r); img.data[p + 1] = toSrgb(g); img.data[p + 2] = toSrgb(b); img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

// ---- A photo as a card: the placeholder is drawn first, the rendition fades in over it.
function photoCard(photo, caption) {
  const canvas = h("canvas", { width: 32, height: 32, "aria-hidden": "true" });
  const frame = h("span", { class: "frame" }, canvas);
  frame.style.aspectRatio = `${photo.original.width} / ${photo.original.height}`;
  if (photo.placeholder) {
    frame.style.background = photo.placeholder.dominant_color;
    drawBlurhash(photo.placeholder.blurhash, canvas);
  }
  if (photo.thumbnail) {
    const img = h("img", { src: photo.thumbnail, alt: `photo ${photo.id}`, loading: "lazy", decoding: "async" });
    img.addEventListener("load", () => img.classList.add("loaded"));
    frame.append(img);
  }
  const facts = [photo.status, photo.owner || "no owner", ...photo.kinds];
  return h("a", { class: "card", href: `#photo/${photo.id}`, dataset: { id: photo.id, status: photo.status } },
    frame,
    h("span", { class: "card-text" },
      h("code", {}, photo.id.slice(-8)), " ", h("span", { class: `badge badge-${photo.status}` }, photo.status),
      h("br"), facts.slice(1).join(" · "), h("br"), h("small", {}, when(photo.created_at)),
      caption ? [h("br"), caption] : null));
}
