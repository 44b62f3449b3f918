"use strict";
// The console's views: recent photos, failures, duplicates, jobs, health; and the router that
// shows one of them from the address (#photos, #failures, …, #photo/<id>).

const VIEWS = ["photos", "failures", "duplicates", "jobs", "health", "photo"];

function showView(name) {
  $("status-line").classList.toggle("hidden", name !== "photo");  // an upload's progress, in the photo view
  for (const view of VIEWS) $(`view-${view}`).classList.toggle("hidden", view !== name);
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function failed(container, error) {
  container.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
}

// ---- Recent photos: filters, a grid, a cursor.
let photosCursor = null;

function photoQuery() {
  const params = new URLSearchParams();
  for (const name of ["status", "owner", "kind", "q"]) {
    const value = $(`filter-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  for (const [field, name] of [["filter-since", "since"], ["filter-until", "until"]]) {
    if ($(field).value) params.set(name, new Date($(field).value).toISOString());
  }
  return params;
}

async function loadPhotos(more) {
  const params = photoQuery();
  if (more && photosCursor) params.set("cursor", photosCursor);
  const grid = $("photo-grid");
  try {
    const { body } = await api(`/v1/photos?${params}`);
    const cards = body.photos.map((p) => photoCard(p));
    if (more) grid.append(...cards); else grid.replaceChildren(...cards);
    if (!grid.children.length) grid.append(h("p", {}, "No photos match."));
    photosCursor = body.next_cursor;
    $("photos-more").classList.toggle("hidden", !photosCursor);
    $("photos-count").textContent = `${grid.querySelectorAll(".card").length} shown${photosCursor ? ", more below" : ""}`;
  } catch (error) {
    failed(grid, error);
  }
}

$("filter-form").addEventListener("submit", (event) => { event.preventDefault(); loadPhotos(false); });
$("photos-more").addEventListener("click", () => loadPhotos(true));

// The kinds a list can be filtered by come from the API's own description: a kind added there
// (animated, HDR) appears here with no change to the page.
async function loadKinds() {
  try {
    const doc = await (await fetch("/openapi.json")).json();
    const kind = doc.paths["/v1/photos"].get.parameters.find((p) => p.name === "kind");
    $("filter-kind").append(...kind.schema.enum.map((k) => h("option", { value: k }, k)));
  } catch (error) {
    // The filter still works without its choices listed; nothing else depends on them.
  }
}

// ---- Failures: grouped by error code, each with its photos and a retry button.
async function loadFailures() {
  const list = $("failure-groups");
  try {
    const { body: stats } = await api("/v1/stats");
    if (!stats.failures.length) { list.replaceChildren(h("p", {}, "No failed photos.")); return; }
    const groups = await Promise.all(stats.failures.map(async ({ code, count }) => {
      const { body } = await api(`/v1/photos?status=failed&error_code=${encodeURIComponent(code)}&limit=20`);
      const rows = body.photos.map((p) => h("tr", { dataset: { id: p.id } },
        h("td", {}, h("a", { href: `#photo/${p.id}` }, h("code", {}, p.id))),
        h("td", {}, p.owner || "—"),
        h("td", {}, when(p.created_at)),
        h("td", {}, p.error.message),
        h("td", {}, h("button", { type: "button", class: "retry", "aria-label": `Retry photo ${p.id}`, onclick: (e) => retry(p.id, e.target) }, "Retry"))));
      return h("section", { class: "group", dataset: { code } },
        h("h3", {}, h("code", {}, code), ` · ${count} photo${count === 1 ? "" : "s"}`),
        h("div", { class: "scroll" }, h("table", {},
          h("caption", { class: "visually-hidden" }, `Photos failed with ${code}`),
          h("thead", {}, h("tr", {}, ["photo", "owner", "accepted", "message", "action"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows))));
    }));
    list.replaceChildren(...groups);
  } catch (error) {
    failed(list, error);
  }
}

async function retry(id, button) {
  const cell = button.parentElement;
  button.disabled = true;
  try {
    await api(`/v1/photos/${id}/retry`, { method: "POST" });
  } catch (error) {
    cell.replaceChildren(h("span", { class: "error", role: "status" }, error.message));
    return;
  }
  const state = h("span", { class: "retry-state", role: "status", dataset: { status: "queued" } }, "queued again");
  cell.replaceChildren(state);
  for (let i = 0; i < 300; i++) {  // until a worker has had it, 10 minutes at most
    await new Promise((r) => setTimeout(r, 1000));
    const { body } = await api(`/v1/photos/${id}`);
    state.dataset.status = body.status;
    state.textContent = body.status === "failed" ? `failed again: ${body.error.code}` : body.status;
    if (body.status === "ready" || body.status === "failed") return;
  }
}

// ---- Duplicates: each earlier photo beside the later ones that repeat it.
async function loadDuplicates() {
  const list = $("clusters");
  try {
    const { body } = await api("/v1/duplicates");
    if (!body.clusters.length) { list.replaceChildren(h("p", {}, "No duplicates found yet.")); return; }
    list.replaceChildren(...body.clusters.map((cluster) => h("section", { class: "cluster", "aria-label": `Photo ${cluster.photo.id} and its copies` },
      photoCard(cluster.photo, h("strong", {}, "earliest")),
      ...cluster.copies.map((copy) => photoCard(copy.photo, h("span", { class: "match" },
        `${copy.kind}`, copy.distance != null ? `, distance ${copy.distance}` : "",
        copy.inliers != null ? `, ${copy.inliers} inliers` : "", copy.transform ? `, ${copy.transform}` : ""))))));
  } catch (error) {
    failed(list, error);
  }
}

// ---- Jobs: progress, rate, ETA, report.
const duration = (s) => (s == null ? "—" : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

async function loadJobs() {
  const list = $("job-list");
  try {
    const { body } = await api("/v1/jobs");
    if (!body.jobs.length) { list.replaceChildren(h("p", {}, "No jobs have run.")); return; }
    list.replaceChildren(...body.jobs.map((job) => {
      const percent = Math.round(job.progress * 100);
      const outcomes = Object.entries(job.report.outcomes).map(([k, n]) => `${k} ${n}`).join(", ");
      return h("section", { class: "job", dataset: { id: job.id } },
        h("h3", {}, `${job.kind} `, h("code", {}, job.id), ` · ${job.status}`),
        h("label", { for: `progress-${job.id}` }, `${job.finished} of ${job.total} photos (${percent} %)`),
        h("progress", { id: `progress-${job.id}`, max: job.total || 1, value: job.finished }),
        h("p", {}, `${job.per_second == null ? "no photo finished yet" : `${job.per_second} photos/s`} · ETA ${duration(job.eta_seconds)}`
          + ` · selection ${job.selection.mode}${job.selection.owner ? ` of ${job.selection.owner}` : ""} · target ${job.target_version}`),
        h("p", {}, `Report: ${outcomes || "nothing yet"}; ${job.report.bytes_written} bytes written, ${job.report.bytes_deleted} deleted`),
        job.report.failures.length
          ? h("ul", {}, job.report.failures.map((f) => h("li", {}, h("a", { href: `#photo/${f.id}` }, f.id), ` ${f.code || ""}`)))
          : null);
    }));
  } catch (error) {
    failed(list, error);
  }
}

// ---- Health: readiness, counts, and the last hour as two small bar charts.
function barChart(values, label, unit) {
  const width = 240, height = 60, max = Math.max(1, ...values), bar = width / values.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: now ${values[values.length - 1]}, peak ${Math.max(...values)} ${unit} in the last hour`);
  values.forEach((v, i) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const tall = (v / max) * (height - 2);
    rect.setAttribute("x", (i * bar).toFixed(1));
    rect.setAttribute("y", (height - tall).toFixed(1));
    rect.setAttribute("width", Math.max(1, bar - 1).toFixed(1));
    rect.setAttribute("height", tall.toFixed(1));
    svg.append(rect);
  });
  return h("figure", { class: "chart" }, svg, h("figcaption", {}, `${label} (peak ${Math.max(...values)})`));
}

function lastCheck(run) {
  if (!run) return "No check has run yet: run `media-pipeline check` (daily, as a job).";
  if (run.ok) return `The last check (${when(run.finished_at)}) found the catalog and storage in agreement.`;
  const problems = Object.entries(run.problems).map(([kind, n]) => `${kind} ${n}`).join(", ");
  return `The last check (${when(run.finished_at)}) found problems: ${problems}. Run \`media-pipeline check\` for examples.`;
}

async function loadHealth() {
  const panel = $("health-panel");
  try {
    const ready = await (await fetch("/readyz")).json();
    const { body: stats } = await api("/v1/stats");
    const minutes = stats.last_hour;
    const checks = Object.entries(ready.checks).map(([name, state]) =>
      h("li", { dataset: { ok: String(state === "ok") } }, h("strong", {}, name === "queue" ? "broker" : name), `: ${state}`));
    const counts = Object.entries(stats.photos).map(([status, n]) => h("li", {}, `${status}: ${n}`));
    panel.replaceChildren(
      h("section", {}, h("h3", {}, `Readiness: ${ready.status}`), h("ul", { id: "readiness" }, checks)),
      h("section", {}, h("h3", {}, "Photos"), h("ul", {}, counts,
        h("li", {}, `stuck (the reconciler's next work): ${stats.stuck}`),
        h("li", {}, stats.queues ? `broker queues: ${Object.entries(stats.queues).map(([q, n]) => `${q} ${n}`).join(", ")}` : "broker queues: no answer"))),
      h("section", {}, h("h3", {}, "Catalog against storage"), h("p", { id: "last-check" }, lastCheck(stats.last_check))),
      h("section", { class: "charts" }, h("h3", {}, "The last hour"),
        barChart(minutes.map((m) => m.queue_depth), "Queue depth", "photos"),
        barChart(minutes.map((m) => m.finished), "Photos processed per minute", "photos/min"),
        h("p", {}, `Since ${when(minutes[0].minute)}: ${minutes.reduce((n, m) => n + m.arrived, 0)} accepted, `
          + `${minutes.reduce((n, m) => n + m.finished, 0)} finished. Generated ${when(stats.generated_at)}.`)));
    panel.dataset.loaded = "true";
  } catch (error) {
    failed(panel, error);
  }
}

// ---- The router.
const LOADERS = { photos: () => loadPhotos(false), failures: loadFailures, duplicates: loadDuplicates, jobs: loadJobs, health: loadHealth };

function route() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("photo/")) return follow(decodeURIComponent(hash.slice(6)));
  if (/^[0-9a-z]{26}$/.test(hash)) return follow(hash);  // the address form before the console
  const view = LOADERS[hash] ? hash : "photos";
  showView(view);
  LOADERS[view]();
}

for (const button of document.querySelectorAll("[data-refresh]")) {
  button.addEventListener("click", () => LOADERS[button.dataset.refresh]());
}
window.addEventListener("hashchange", route);
// Jobs and Health follow what they show: reloaded every 5 s while on screen.
setInterval(() => {
  const view = location.hash.slice(1);
  if ((view === "jobs" || view === "health") && !document.hidden) LOADERS[view]();
}, 5000);
loadKinds();
route();
