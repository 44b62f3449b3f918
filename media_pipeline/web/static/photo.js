"use strict";
// The photo view: upload a photo, watch it process, see its renditions, crops, focal point,
// placeholder, metadata and duplicates.

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

// The focal point crops are cut around, and the subject box, over the preview.
function showFocus(photo) {
  const mark = $("focal-point"), box = $("subject-box");
  mark.classList.toggle("hidden", !photo.focus);
  box.classList.toggle("hidden", !photo.focus);
  if (!photo.focus) return;
  const { focal_point: p, subject: s } = photo.focus;
  Object.assign(mark.style, { left: `${p.x * 100}%`, top: `${p.y * 100}%` });
  Object.assign(box.style, { left: `${s.x * 100}%`, top: `${s.y * 100}%`, width: `${s.w * 100}%`, height: `${s.h * 100}%` });
  mark.title = `focal point (${p.x}, ${p.y}), ${photo.focus.source}`;
}

// One picture per crop aspect: its smallest rendition, from the crop's srcset.
function showCrops(photo) {
  const crops = Object.entries(photo.crops || {});
  const figures = crops.map(([aspect, crop]) => {
    const srcset = crop.srcset.avif || crop.srcset.webp || crop.srcset.jpeg || "";
    const first = srcset.split(",")[0].trim().split(" ")[0];
    const [a, b] = aspect.split(":").map(Number);
    const img = h("img", { src: first, alt: `${aspect} crop`, width: 160, height: Math.round((160 * b) / a) });
    return h("figure", {}, img, h("figcaption", {}, aspect));
  });
  $("crops").replaceChildren(...(figures.length ? figures : [h("p", {}, "No crops.")]));
}

function show(photo) {
  $("photo").classList.remove("hidden");
  $("photo-id").value = photo.id;
  const meta = $("metadata");
  meta.replaceChildren();
  addFact(meta, "id", photo.id);
  addFact(meta, "owner", photo.owner);
  addFact(meta, "original", `${photo.original.format} ${photo.original.width}×${photo.original.height}, ${photo.original.bytes} bytes${photo.original.hdr ? ", HDR (gain map)" : ""}`);
  $("ready-parts").classList.toggle("hidden", photo.status !== "ready");
  const anim = photo.original.animation;
  if (anim) {
    const kept = anim.kept ? "animated renditions" : `still renditions only (${anim.reason})`;
    addFact(meta, "animation", `${photo.original.frames} frames, ${photo.original.duration_ms} ms: ${kept}`);
  }
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

  showFocus(photo);
  showCrops(photo);

  const body = $("renditions").tBodies[0];
  body.replaceChildren(...photo.renditions.map((r) => row([r.aspect, r.width, r.height, r.format, r.animated ? "animated" : "still", r.gamut, r.hdr ? "HDR" : "SDR", r.bytes, link(r.url)])));

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

// Follows a photo until it is ready or failed; a newer follow (another photo opened) stops it.
let following = 0;

async function follow(id) {
  const mine = ++following;
  showView("photo");
  if (location.hash !== `#photo/${id}`) history.replaceState(null, "", `#photo/${id}`);
  for (;;) {
    let body;
    try {
      body = (await api(`/v1/photos/${encodeURIComponent(id)}`)).body;
    } catch (error) {
      setStatus("error", error.message);
      return;
    }
    if (mine !== following) return;
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
  showView("photo");
  setStatus("uploading", "Uploading…");
  try {
    const { body } = await api("/v1/photos", { method: "POST", body: data });
    follow(body.id);
  } catch (error) {
    setStatus("error", error.message);
  }
});

$("open-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = $("photo-id").value.trim();
  if (id) location.hash = `#photo/${id}`;
});
