// wardrobe's page: plain JavaScript over the JSON API. The token lives in sessionStorage
// (gone when the tab closes); images load through short-lived signed URLs.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("wardrobe-token"), cursor: null, categories: [], polling: null };

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.json);
  }
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 204) return null;
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    if (r.status === 401) signOut();
    throw new Error((body.error && body.error.message) || ("HTTP " + r.status));
  }
  return body;
}

function show(id) {
  for (const s of ["signin", "home", "item"]) $("#" + s).hidden = s !== id;
}

function signOut() {
  sessionStorage.removeItem("wardrobe-token");
  state.token = null;
  route();
}

function text(el, value) { el.textContent = value; return el; }

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function swatch(color) {
  const s = el("span", { class: "swatch", title: color.name + " " + color.hex });
  s.style.background = color.hex;
  return s;
}

// --- sign in ---------------------------------------------------------------------
async function setupSignin() {
  show("signin");
  const cfg = await fetch("/v1/config").then((r) => r.json()).catch(() => ({}));
  $("#signup-form").hidden = !cfg.allow_signup;
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  try {
    await api("/v1/jobs?limit=1");
    sessionStorage.setItem("wardrobe-token", state.token);
    location.hash = "#/";
    route();
  } catch (e) {
    state.token = null;
    text($("#signin-error"), "That token was not accepted.");
  }
});

$("#signup-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("/v1/users", { method: "POST", json: { name: $("#signup-name").value } });
    $("#new-token").hidden = false;
    text($("#new-token-value"), r.token);
    $("#token").value = r.token;
  } catch (e) {
    text($("#signin-error"), e.message);
  }
});

$("#signout").addEventListener("click", signOut);

// --- upload and job progress --------------------------------------------------------
$("#upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = $("#zip").files[0];
  if (!file) return;
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.value = 0;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/uploads");
  xhr.setRequestHeader("Authorization", "Bearer " + state.token);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) {
      bar.value = (100 * e.loaded) / e.total;
      text($("#upload-label"), `uploading ${Math.round(bar.value)}%`);
    }
  };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202) {
      bar.value = 100;
      text($("#upload-label"), "uploaded");
      followJob(body.id);
    } else {
      text($("#upload-label"), (body.error && body.error.message) || ("upload failed: HTTP " + xhr.status));
    }
  };
  xhr.onerror = () => text($("#upload-label"), "upload failed: network error");
  const form = new FormData();
  form.append("file", file);
  xhr.send(form);
});

function formatDuration(seconds) {
  if (seconds < 60) return `${Math.max(1, seconds)} s`;
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function renderJob(job) {
  $("#job").hidden = false;
  const p = job.progress;
  $("#job").dataset.status = job.status;
  text($("#job-status"), job.status.replace("_", " "));
  $("#job-progress").value = p.percent;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  text($("#job-counts"), `${p.photos_done + p.photos_failed + p.photos_duplicate} / ${p.photos_total} photos, ` +
    `${plural(p.items_found, "garment")} found` + (p.photos_failed ? `, ${plural(p.photos_failed, "photo")} failed` : "") +
    (p.photos_duplicate ? `, ${plural(p.photos_duplicate, "duplicate photo")}` : "") +
    (p.eta_seconds != null ? `, about ${formatDuration(p.eta_seconds)} left` : ""));
  const ul = $("#job-errors");
  ul.replaceChildren(...job.errors.map((e) => el("li", { text: `${e.entry || "upload"}: ${e.message}` })));
}

function followJob(id) {
  clearInterval(state.polling);
  const tick = async () => {
    try {
      const job = await api("/v1/jobs/" + id);
      renderJob(job);
      if (!["queued", "running"].includes(job.status)) {
        clearInterval(state.polling);
        loadGallery(true);
      }
    } catch (e) {
      clearInterval(state.polling);
    }
  };
  tick();
  state.polling = setInterval(tick, 700);
}

// --- gallery ----------------------------------------------------------------------
function filterQuery() {
  const q = new URLSearchParams({ limit: "48" });
  for (const [id, key] of [["#f-category", "category"], ["#f-supercategory", "supercategory"], ["#f-color", "color"]]) {
    if ($(id).value) q.set(key, $(id).value);
  }
  if ($("#f-hide-duplicates").checked) q.set("hide_duplicates", "true");
  return q;
}

function card(item) {
  const img = el("img", { src: item.cutout_signed_url, alt: item.category, loading: "lazy" });
  const caption = el("div", { class: "caption" },
    el("span", { text: item.category.split(",")[0] }),
    el("span", {}, ...(item.colors[0] ? [swatch(item.colors[0])] : []), `${Math.round(item.confidence * 100)}%`));
  const a = el("a", { class: "card", href: "#/items/" + item.id, "data-category": item.category, "data-id": item.id },
    el("div", { class: "thumb checker" }, img), caption);
  if (item.duplicate_of) a.append(el("div", { class: "dup caption", text: "possible duplicate" }));
  return a;
}

async function loadGallery(reset) {
  if (reset) { state.cursor = null; $("#gallery").replaceChildren(); }
  const q = filterQuery();
  if (state.cursor) q.set("cursor", state.cursor);
  const page = await api("/v1/items?" + q.toString());
  $("#gallery").append(...page.items.map(card));
  state.cursor = page.next_cursor;
  $("#more").hidden = !state.cursor;
  $("#gallery-empty").hidden = $("#gallery").children.length > 0;
}

$("#more").addEventListener("click", () => loadGallery(false));
$("#filters").addEventListener("change", () => loadGallery(true));

async function setupHome() {
  show("home");
  if (!state.categories.length) {
    const c = await api("/v1/categories");
    state.categories = c.categories;
    $("#f-category").append(...c.categories.map((x) => el("option", { value: x.name, text: x.name })));
    $("#f-supercategory").append(...c.supercategories.map((x) => el("option", { value: x, text: x })));
    $("#f-color").append(...c.colors.map((x) => el("option", { value: x, text: x })));
    $("#item-new-category").append(...c.categories.map((x) => el("option", { value: x.name, text: x.name })));
  }
  await loadGallery(true);
}

// --- one item ----------------------------------------------------------------------
async function setupItem(id) {
  show("item");
  text($("#item-message"), "");
  if (!state.categories.length) await setupHome().then(() => show("item"));
  const item = await api("/v1/items/" + id);
  $("#item").dataset.id = item.id;
  text($("#item-category"), item.category + (item.status === "not_garment" ? " (not a garment)" : ""));
  text($("#item-confidence"), `${Math.round(item.confidence * 100)}%`);
  $("#item-colors").replaceChildren(...item.colors.map((c) => el("span", {}, swatch(c), c.name + " ")));
  $("#item-duplicate").hidden = !item.duplicate_of;
  $("#item-cutout").src = item.cutout_signed_url;
  $("#item-new-category").value = item.category;
  const photo = $("#item-photo");
  photo.onload = () => {
    const svg = $("#item-mask");
    svg.setAttribute("viewBox", `0 0 ${photo.naturalWidth} ${photo.naturalHeight}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.replaceChildren(...item.mask.polygons.map((poly) => {
      const p = document.createElementNS("http://www.w3.org/2000/svg", "polygon");
      p.setAttribute("points", poly.map(([x, y]) => `${x},${y}`).join(" "));
      return p;
    }));
  };
  photo.src = item.photo_signed_url;
}

$("#correct-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("#item").dataset.id;
  const item = await api("/v1/items/" + id, { method: "PATCH", json: { category: $("#item-new-category").value } });
  text($("#item-category"), item.category);
  text($("#item-message"), "Saved: now " + item.category);
});

$("#not-garment").addEventListener("click", async () => {
  const id = $("#item").dataset.id;
  await api("/v1/items/" + id, { method: "PATCH", json: { not_garment: true } });
  text($("#item-message"), "Marked as not a garment: hidden from your wardrobe, kept to improve the model.");
});

$("#delete-item").addEventListener("click", async () => {
  const id = $("#item").dataset.id;
  await api("/v1/items/" + id, { method: "DELETE" });
  location.hash = "#/";
});

// --- routing ------------------------------------------------------------------------
async function route() {
  $("#signout").hidden = !state.token;
  if (!state.token) return setupSignin();
  const m = location.hash.match(/^#\/items\/([0-9a-f-]+)$/);
  try {
    if (m) await setupItem(m[1]); else await setupHome();
  } catch (e) {
    console.error(e);
  }
}

window.addEventListener("hashchange", route);
route();
