"use strict";
// Operator page: talks only to the public v1 API and the image URLs.

const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  const el = $("status");
  el.dataset.status = state;
  el.textContent = text;
}

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

// ---- Rendering a photo record.
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

function link(url) {
  const a = document.createElement("a");
  a.href = url; a.textContent = url.split("/").slice(-2).join("/");
  return a;
}

function addFact(dl, name, value) {
  const dt = document.createElement("dt"); dt.textContent = name;
  const dd = document.createElement("dd"); dd.textContent = value == null || value === "" ? "—" : value;
  dl.append(dt, dd);
}

function show(photo) {
  $("photo").classList.remove("hidden");
  $("photo-id").value = photo.id;
  const meta = $("metadata");
  meta.replaceChildren();
  addFact(meta, "id", photo.id);
  addFact(meta, "owner", photo.owner);
  addFact(meta, "original", `${photo.original.format} ${photo.original.width}×${photo.original.height}, ${photo.original.bytes} bytes${photo.original.hdr ? ", HDR (gain map)" : ""}`);
  if (photo.status !== "ready") return;
  const m = photo.metadata || {};
  addFact(meta, "taken at", m.taken_at);
  addFact(meta, "camera", [m.camera && m.camera.make, m.camera && m.camera.model].filter(Boolean).join(" "));
  addFact(meta, "orientation tag", m.orientation);
  addFact(meta, "colour profile", m.color_profile);
  addFact(meta, "preset version", photo.preset_version);
  if (photo.hashes) addFact(meta, "pHash", photo.hashes.phash);
  if (photo.focus) {
    const { focal_point: p, subject: s, source } = photo.focus;
    addFact(meta, "focus", `${source}: focal point (${p.x}, ${p.y}), subject ${s.w} x ${s.h} at (${s.x}, ${s.y})`);
  }

  // The whole picture's renditions come first; crops (aspect "1:1" etc.) after them.
  const whole = photo.renditions.filter((r) => r.aspect === "original");
  const { width, height } = whole[0];
  $("stage").style.aspectRatio = `${width} / ${height}`;
  if (photo.placeholder) {
    $("blurhash").textContent = photo.placeholder.blurhash;
    $("dominant").textContent = photo.placeholder.dominant_color;
    $("swatch").style.background = photo.placeholder.dominant_color;
    drawBlurhash(photo.placeholder.blurhash, $("placeholder"));
  }
  $("src-avif").srcset = (photo.srcset && photo.srcset.avif) || "";
  $("src-webp").srcset = (photo.srcset && photo.srcset.webp) || "";
  const img = $("preview-img");
  img.onload = () => { $("current-src").textContent = img.currentSrc.split("/").slice(-2).join("/"); img.dataset.loaded = "true"; };
  img.srcset = (photo.srcset && photo.srcset.jpeg) || "";
  img.src = whole[whole.length - 1].url;

  const body = $("renditions").tBodies[0];
  body.replaceChildren(...photo.renditions.map((r) => row([r.aspect, r.width, r.height, r.format, r.gamut, r.hdr ? "HDR" : "SDR", r.bytes, link(r.url)])));

  const dups = $("duplicates");
  if (Array.isArray(photo.duplicates) && photo.duplicates.length) {
    const list = document.createElement("ul");
    for (const d of photo.duplicates) {
      const li = document.createElement("li");
      li.textContent = `${d.kind} duplicate of ${d.id} (distance ${d.distance}${d.transform ? ", " + d.transform : ""})`;
      list.appendChild(li);
    }
    dups.replaceChildren(list);
  } else {
    dups.textContent = Array.isArray(photo.duplicates) ? "No duplicates found." : "Duplicate detection has not reported on this photo.";
  }
}

async function follow(id) {
  history.replaceState(null, "", `#${id}`);
  for (;;) {
    const response = await fetch(`/v1/photos/${encodeURIComponent(id)}`);
    const body = await response.json();
    if (!response.ok) { setStatus("error", `${response.status} ${body.error.code}: ${body.error.message}`); return; }
    show(body);
    if (body.status === "ready") { setStatus("ready", `Ready: ${body.renditions.length} renditions.`); return; }
    if (body.status === "failed") { setStatus("failed", `Failed: ${body.error.code}: ${body.error.message}`); return; }
    setStatus(body.status, `${body.status[0].toUpperCase()}${body.status.slice(1)}…`);
    await new Promise((r) => setTimeout(r, 400));
  }
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData();
  data.append("file", $("file").files[0]);
  if ($("owner").value) data.append("owner", $("owner").value);
  setStatus("uploading", "Uploading…");
  const response = await fetch("/v1/photos", { method: "POST", body: data });
  const body = await response.json();
  if (response.status !== 202) { setStatus("error", `${response.status} ${body.error.code}: ${body.error.message}`); return; }
  follow(body.id);
});

$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("photo-id").value.trim()) follow($("photo-id").value.trim());
});

if (location.hash.length > 1) follow(location.hash.slice(1));
