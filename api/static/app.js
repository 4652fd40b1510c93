// wardrobe's page: plain JavaScript over the JSON API. The token lives in sessionStorage
// (gone when the tab closes); images load through short-lived signed URLs.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: sessionStorage.getItem("wardrobe-token"), cursor: null, categories: [], polling: null, stream: null,
  // the review list and /v1/me, as the gallery below: an answer to an older ask is dropped (review.js, askMe)
  reviewCursor: null, reviewCount: 0, reviewGen: 0, meAsked: 0,
  // the gallery: each filter change starts a new generation; a response of an older one is dropped,
  // so fast changes never draw stale pages over newer ones
  galleryGen: 0, galleryLoaded: false, galleryBusy: null, galleryScroll: 0, me: null };

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
  for (const s of ["signin", "home", "review", "item"]) $("#" + s).hidden = s !== id;
}

function signOut() {
  sessionStorage.removeItem("wardrobe-token");
  state.token = null;
  state.me = null;
  state.galleryLoaded = false;
  state.galleryGen++;
  stopFollowing();
  $("#gallery").replaceChildren();
  $("#job").hidden = true;
  text($("#whoami"), "");
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
    text($("#signin-error"), "");
    $("#new-token").hidden = true;
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
    text($("#signin-error"), "");
    $("#new-token").hidden = false;
    text($("#new-token-value"), r.token);
    $("#token").value = r.token;
  } catch (e) {
    text($("#signin-error"), e.message);
  }
});

$("#signout").addEventListener("click", signOut);

// --- upload and job progress --------------------------------------------------------
// one zip: sent as it is (POST /v1/uploads); photos, or a folder of them: zipped by the browser as they
// are sent, through a resumable upload session (upload.js)
$("#upload-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const files = [...$("#zip").files, ...$("#folder").files];
  if (!files.length) {
    $("#upload-label").classList.add("error");
    text($("#upload-label"), "Choose photos, a zip or a folder first.");
    return;
  }
  if (files.length === 1 && /\.zip$/i.test(files[0].name)) uploadZip(files[0]);
  else uploadPhotos(files);
});

function uploadStarts() {
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.value = 0;
  $("#upload-label").classList.remove("error");
  return bar;
}

function uploadFailed(message) {
  $("#upload-progress").hidden = true;
  $("#upload-label").classList.add("error");
  text($("#upload-label"), message);
}

async function uploadPhotos(files) {
  const bar = uploadStarts();
  $("#upload-button").disabled = true;
  try {
    const job = await window.wardrobeUploadPhotos(state.token, files, (sent, total, photos, note) => {
      if (sent !== null) bar.value = (100 * sent) / Math.max(1, total);
      text($("#upload-label"), `${photos} photo${photos === 1 ? "" : "s"}: uploading ${Math.floor(bar.value)}%` +
        (note ? ` (${note})` : ""));
    });
    bar.value = 100;
    text($("#upload-label"), "uploaded");
    $("#zip").value = "";
    $("#folder").value = "";
    followJob(job.id);
  } catch (e) {
    uploadFailed("Not uploaded: " + e.message);
  } finally {
    $("#upload-button").disabled = false;
  }
}

function uploadZip(file) {
  const bar = uploadStarts();
  const failed = uploadFailed;
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
      failed("Not accepted: " + ((body.error && body.error.message) || ("HTTP " + xhr.status)));
    }
  };
  xhr.onerror = () => failed("Upload failed: network error");
  const form = new FormData();
  form.append("file", file);
  xhr.send(form);
}

function formatDuration(seconds) {
  if (seconds < 60) return `${Math.max(1, seconds)} s`;
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

// a job still queued this long after the page first saw it: no worker has taken it
const WORKER_WAIT_MS = 10000;

function renderJob(job) {
  $("#job").hidden = false;
  const p = job.progress;
  $("#job").dataset.status = job.status;
  if (state.queuedSince === undefined || state.queuedJob !== job.id) {
    state.queuedJob = job.id;
    state.queuedSince = Date.now();
  }
  const waiting = job.status === "queued" && Date.now() - state.queuedSince > WORKER_WAIT_MS;
  $("#job").dataset.waiting = String(waiting);
  text($("#job-status"), waiting ? "queued: waiting for a worker (none has picked the job up yet; is one running?)"
    : job.status.replace("_", " "));
  $("#job-progress").value = p.percent;
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  text($("#job-counts"), `${p.photos_done + p.photos_failed + p.photos_duplicate} / ${p.photos_total} photos, ` +
    `${plural(p.items_found, "garment")} found` + (p.photos_failed ? `, ${plural(p.photos_failed, "photo")} failed` : "") +
    (p.photos_duplicate ? `, ${plural(p.photos_duplicate, "duplicate photo")}` : "") +
    (p.eta_seconds != null ? `, about ${formatDuration(p.eta_seconds)} left` : ""));
  const ul = $("#job-errors");
  ul.replaceChildren(...job.errors.map((e) => el("li", { text: `${e.entry || "upload"}: ${e.message}` })));
}

// a job's Server-Sent Events (GET /v1/jobs/<id>/events) read with fetch, which can send the token
// (EventSource cannot); where the server ends the stream early it is opened again from the last id
async function streamJob(id, ctrl, onEvent) {
  let lastId = null;
  for (;;) {
    const headers = { Authorization: "Bearer " + state.token };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const r = await fetch(`/v1/jobs/${id}/events`, { headers, signal: ctrl.signal });
    // an id this server no longer takes (its format changed with a deploy): the stream from the start
    // (cards already shown are skipped by id, failed photos by failedSeen)
    if (r.status === 400 && lastId) {
      const body = await r.json().catch(() => null);
      if (body && body.error && body.error.code === "invalid_last_event_id") { lastId = null; continue; }
      throw new Error("HTTP 400");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          let v = i < 0 ? "" : line.slice(i + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "data") data += (data ? "\n" : "") + v;
          else if (field === "event") event = v;
          else if (field === "id") lastId = v;
        }
        if (!data) continue;
        onEvent(event, JSON.parse(data));
        if (event === "end") return;
      }
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
}

function stopFollowing() {
  clearInterval(state.polling);
  state.polling = null;
  if (state.stream) state.stream.abort();
  state.stream = null;
}

// a garment the job just found: on top of the gallery, unless the filters decide what shows
function addLiveItem(item) {
  if ($("#home").hidden || !state.galleryLoaded) { state.galleryStale = true; return; }
  if (filtersActive()) { prependNewItems().catch(() => {}); return; }
  if (galleryCard(item.id)) return;
  $("#gallery").prepend(card(item));
  renderGalleryEmpty();
}

function renderRetry(job) {
  $("#job-retry").hidden = !job.retryable;
  $("#job-retry").dataset.job = job.id;
}

function followJob(id) {
  stopFollowing();
  text($("#job-retry-message"), "");
  $("#job-retry").hidden = true;
  const ctrl = new AbortController();
  state.stream = ctrl;
  let photoErrors = [];
  const failedSeen = new Set();  // after a reconnect the server sends recent failed photos again
  let lastReview = 0;
  const review = () => {
    if (Date.now() - lastReview < 2000) return;
    lastReview = Date.now();
    refreshReviewCount().catch(() => {});
  };
  streamJob(id, ctrl, (event, data) => {
    if (event === "progress") {
      renderJob(Object.assign({}, data, { errors: data.errors.concat(photoErrors) }));
    } else if (event === "photo_failed") {
      if (failedSeen.has(data.photo_id)) return;
      failedSeen.add(data.photo_id);
      if (data.code !== "cancelled") photoErrors.push(data);
      $("#job-errors").append(el("li", { text: `${data.entry || "upload"}: ${data.message}` }));
    } else if (event === "item") {
      addLiveItem(data);
      review();
    } else if (event === "end") {
      renderJob(data);
      renderRetry(data);
      lastReview = 0;
      review();
      if (state.stream === ctrl) state.stream = null;
    }
  }).catch((e) => {
    if (ctrl.signal.aborted) return;
    pollJob(id);  // no stream (too many open on the server, an old proxy): poll instead
  });
}

function pollJob(id) {
  stopFollowing();
  let seen = 0;
  const tick = async () => {
    try {
      const job = await api("/v1/jobs/" + id);
      renderJob(job);
      const done = !["queued", "running"].includes(job.status);
      if (done) { clearInterval(state.polling); state.polling = null; renderRetry(job); }
      if (job.progress.items_found > seen || done) {
        // garments found since the last look: the newest come first, so they go on top
        seen = job.progress.items_found;
        if (!$("#home").hidden) prependNewItems().catch(() => {});
        refreshReviewCount().catch(() => {});
      }
    } catch (e) {
      clearInterval(state.polling);
      state.polling = null;
    }
  };
  tick();
  state.polling = setInterval(tick, 1500);
}

$("#job-retry").addEventListener("click", async () => {
  const id = $("#job-retry").dataset.job;
  $("#job-retry").disabled = true;
  try {
    const job = await api(`/v1/jobs/${id}/retry`, { method: "POST" });
    followJob(id);
    text($("#job-retry-message"), `${job.retried_photos} photo${job.retried_photos === 1 ? "" : "s"} going again`);
  } catch (e) {
    text($("#job-retry-message"), e.message);
  } finally {
    $("#job-retry").disabled = false;
  }
});

// --- gallery ----------------------------------------------------------------------
function filterQuery() {
  const q = new URLSearchParams({ limit: "48" });
  for (const [id, key] of [["#f-category", "category"], ["#f-supercategory", "supercategory"], ["#f-color", "color"]]) {
    if ($(id).value) q.set(key, $(id).value);
  }
  if ($("#f-hide-duplicates").checked) q.set("hide_duplicates", "true");
  return q;
}

function filtersActive() {
  return ["#f-category", "#f-supercategory", "#f-color"].some((id) => $(id).value) || $("#f-hide-duplicates").checked;
}

function card(item) {
  const img = el("img", { src: item.cutout_signed_url, alt: item.category, loading: "lazy" });
  // Its URL is signed for a while only; a lazy image first fetched after that is refused: ask once for a fresh one.
  img.addEventListener("error", async () => {
    if (img.dataset.renewed) return;
    img.dataset.renewed = "1";
    try { img.src = (await api("/v1/items/" + item.id)).cutout_signed_url; } catch (e) { /* deleted meanwhile */ }
  });
  const pc = Math.round(item.confidence * 100);
  const caption = el("div", { class: "caption" },
    el("span", { class: "card-category", text: item.category.split(",")[0] }),
    el("span", { class: "card-confidence", title: `the model is ${pc}% sure this is a ${item.category}` },
      ...(item.colors[0] ? [swatch(item.colors[0])] : []), `${pc}% sure`));
  const a = el("a", { class: "card", href: "#/items/" + item.id, "data-category": item.category, "data-id": item.id },
    el("div", { class: "thumb checker" }, img), caption);
  if (item.duplicate_of) a.append(el("div", { class: "dup caption", text: "possible duplicate" }));
  return a;
}

function renderGalleryEmpty() {
  const empty = $("#gallery").children.length === 0;
  $("#gallery-empty").hidden = !empty;
  text($("#gallery-empty"), filtersActive() ? "No garments match these filters."
    : "No garments yet: upload photos, or a zip of them.");
}

// reset: the first page for the filters as they are now; else the next page of the current
// generation. A response that arrives after the filters changed again is dropped.
async function loadGallery(reset) {
  if (reset) {
    state.galleryGen++;
    state.cursor = null;
    state.galleryBusy = null;
    $("#more").hidden = true;
  } else if (state.galleryBusy) {
    return state.galleryBusy;  // "Load more" twice: one request
  }
  const gen = state.galleryGen;
  const q = filterQuery();
  if (!reset && state.cursor) q.set("cursor", state.cursor);
  const work = (async () => {
    const page = await api("/v1/items?" + q.toString());
    if (gen !== state.galleryGen) return;  // stale: the filters changed while it was on its way
    if (reset) $("#gallery").replaceChildren();
    $("#gallery").append(...page.items.map(card));
    state.cursor = page.next_cursor;
    state.galleryLoaded = true;
    $("#more").hidden = !state.cursor;
    $("#gallery").dataset.gen = String(gen);
    renderGalleryEmpty();
  })();
  if (!reset) state.galleryBusy = work;
  try { await work; } finally { if (state.galleryBusy === work) state.galleryBusy = null; }
}

// items newer than the gallery's first card, put on top (while a job finds them)
async function prependNewItems() {
  if (!state.galleryLoaded) return loadGallery(true);
  const gen = state.galleryGen;
  const page = await api("/v1/items?" + filterQuery().toString());
  if (gen !== state.galleryGen) return;
  const have = new Set([...$("#gallery").children].map((c) => c.dataset.id));
  const fresh = page.items.filter((i) => !have.has(i.id));
  if (!fresh.length) return;
  // a whole page of new items may hide more between them and the old ones: start again
  if (fresh.length === page.items.length && page.next_cursor) return loadGallery(true);
  $("#gallery").prepend(...fresh.map(card));
  renderGalleryEmpty();
}

$("#more").addEventListener("click", () => loadGallery(false));

// the gallery's link to the review list, with how many items wait there
function renderReviewCount(n) {
  state.reviewCount = n;
  $("#review-banner").hidden = false;
  $("#review-link").replaceChildren("Review ", el("span", { id: "review-count", text: String(n) }),
    ` uncertain item${n === 1 ? "" : "s"}`);
}

// /v1/me's answers can come back out of order (the review page's first read, then a threshold set on it):
// only the answer to the newest ask is drawn (null for an older one), so an old count never comes back
async function askMe(opts) {
  const n = ++state.meAsked;
  const me = await api("/v1/me", opts);
  return n === state.meAsked ? me : null;
}

async function refreshReviewCount() {
  const me = await askMe();
  if (!me) return null;
  state.me = me;
  text($("#whoami"), "Signed in as " + me.name);
  renderReviewCount(me.items_needing_review);
  return me;
}
$("#filters").addEventListener("change", () => loadGallery(true));

async function loadCategories() {
  if (!state.categories.length) {
    const c = await api("/v1/categories");
    state.categories = c.categories;
    $("#f-category").append(...c.categories.map((x) => el("option", { value: x.name, text: x.name })));
    $("#f-supercategory").append(...c.supercategories.map((x) => el("option", { value: x, text: x })));
    $("#f-color").append(...c.colors.map((x) => el("option", { value: x, text: x })));
    $("#item-new-category").append(...c.categories.map((x) => el("option", { value: x.name, text: x.name })));
  }
}

// --- export: POST /v1/exports, follow it, then download through its signed link --------------------
function exportSize(bytes) {
  return bytes >= 1 << 20 ? (bytes / (1 << 20)).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " kB";
}

async function followExport(id) {
  for (;;) {
    const e = await api("/v1/exports/" + id);
    const p = e.progress;
    $("#export-progress").value = p.percent;
    if (e.status === "succeeded") return e;
    if (e.status !== "queued" && e.status !== "running") {
      throw new Error((e.error && e.error.message) || ("the export " + e.status));
    }
    text($("#export-status"), e.status === "queued" ? "waiting for a worker…"
      : `packing ${p.photos_done} of ${p.photos_total} photos…`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

$("#export-button").addEventListener("click", async () => {
  const button = $("#export-button"), bar = $("#export-progress"), status = $("#export-status");
  button.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  status.classList.remove("error");
  text(status, "starting…");
  try {
    const started = await api("/v1/exports", { method: "POST" });
    const e = await followExport(started.id);
    const a = el("a", { href: e.links.download_signed, download: "" });
    document.body.append(a);
    a.click();  // the answer is an attachment: the browser saves it, the page stays
    a.remove();
    text(status, `${e.progress.photos_done} photos, ${e.progress.items_done} items (${exportSize(e.size_bytes)}): ` +
      "downloading");
  } catch (err) {
    status.classList.add("error");
    text(status, "Export failed: " + err.message);
  } finally {
    bar.hidden = true;
    button.disabled = false;
  }
});

async function setupHome() {
  show("home");
  await loadCategories();
  // back from an item: the pages loaded and the scroll position are kept
  if (state.galleryLoaded && state.galleryStale) {
    state.galleryStale = false;  // garments arrived while another page showed
    await Promise.all([loadGallery(true), refreshReviewCount()]);
  } else if (state.galleryLoaded) {
    window.scrollTo(0, state.galleryScroll);
    await refreshReviewCount();
  } else {
    await Promise.all([loadGallery(true), refreshReviewCount()]);
  }
  await resumeJob();
}

// a job still running when the page (re)loads is followed again; a finished one is not shown
// (and one that ended with photos a retry can run again, to offer that)
async function resumeJob() {
  if (state.polling || state.stream || !$("#job").hidden) return;
  const jobs = await api("/v1/jobs?limit=1");
  const last = jobs.jobs[0];
  if (!last) return;
  if (["queued", "running"].includes(last.status)) return followJob(last.id);
  const job = await api("/v1/jobs/" + last.id);
  if (job.retryable) { renderJob(job); renderRetry(job); }
}

// the gallery's card for an item, after the item page changed it
function galleryCard(id) {
  return [...$("#gallery").children].find((c) => c.dataset.id === id);
}

// --- one item ----------------------------------------------------------------------
function itemHeading(item) {
  return item.category + (item.status === "not_garment" ? " (not a garment)" : "");
}

async function setupItem(id) {
  if (!$("#home").hidden) state.galleryScroll = window.scrollY;
  show("item");
  // nothing of the item shown before stays on screen while this one loads (or is missing)
  $("#item").dataset.id = "";
  $("#item-details").hidden = true;
  $("#item-missing").hidden = true;
  $("#delete-confirm").hidden = true;
  text($("#item-message"), "");
  $("#item-photo").removeAttribute("src");
  $("#item-cutout").removeAttribute("src");
  $("#item-mask").replaceChildren();
  if (!state.categories.length) await loadCategories();
  let item;
  try {
    item = await api("/v1/items/" + id);
  } catch (e) {
    $("#item-missing").hidden = false;
    text($("#item-missing-text"), /no such item/.test(e.message)
      ? "This item does not exist: it was deleted, or it belongs to another account."
      : "Could not load this item: " + e.message);
    return;
  }
  $("#item-details").hidden = false;
  $("#item").dataset.id = item.id;
  text($("#item-category"), itemHeading(item));
  text($("#item-confidence"), `${Math.round(item.confidence * 100)}%`);
  // one swatch per colour name (an item's palette can hold two shades of one name)
  const colors = [...new Map(item.colors.map((c) => [c.name, c])).values()];
  $("#item-colors").replaceChildren(...colors.map((c) => el("span", {}, swatch(c), c.name + " ")));
  $("#item-duplicate").hidden = !item.duplicate_of;
  renderItemReview(item);
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
  try {
    const item = await api("/v1/items/" + id, { method: "PATCH", json: { category: $("#item-new-category").value } });
    text($("#item-category"), itemHeading(item));
    renderItemReview(item);
    text($("#item-message"), "Saved: now " + item.category);
    const c = galleryCard(id);  // the answer has no signed image URLs: the card keeps its image
    if (c) {
      c.dataset.category = item.category;
      text(c.querySelector(".card-category"), item.category.split(",")[0]);
    }
  } catch (e) {
    text($("#item-message"), "Not saved: " + e.message);
  }
});

$("#not-garment").addEventListener("click", async () => {
  const id = $("#item").dataset.id;
  try {
    const item = await api("/v1/items/" + id, { method: "PATCH", json: { not_garment: true } });
    text($("#item-category"), itemHeading(item));
    renderItemReview(item);
    text($("#item-message"), "Marked as not a garment: hidden from your wardrobe, kept to improve the model.");
    const c = galleryCard(id);
    if (c) c.remove();
  } catch (e) {
    text($("#item-message"), "Not saved: " + e.message);
  }
});

// delete asks first: the item, its cut-out and its corrections are gone for good
$("#delete-item").addEventListener("click", () => {
  $("#delete-confirm").hidden = false;
  $("#delete-cancel").focus();
});
$("#delete-cancel").addEventListener("click", () => {
  $("#delete-confirm").hidden = true;
  $("#delete-item").focus();
});
$("#delete-yes").addEventListener("click", async () => {
  const id = $("#item").dataset.id;
  try {
    await api("/v1/items/" + id, { method: "DELETE" });
  } catch (e) {
    text($("#item-message"), "Not deleted: " + e.message);
    return;
  }
  const c = galleryCard(id);
  if (c) c.remove();
  renderGalleryEmpty();
  location.hash = "#/";
});

// --- routing ------------------------------------------------------------------------
async function route() {
  $("#signout").hidden = !state.token;
  if (!state.token) return setupSignin();
  const m = location.hash.match(/^#\/items\/([0-9a-f-]+)$/);
  try {
    if (m) await setupItem(m[1]);
    else if (location.hash === "#/review") await setupReview();
    else await setupHome();
  } catch (e) {
    console.error(e);
    text($("#page-error"), "Something went wrong: " + e.message);
    $("#page-error").hidden = false;
    return;
  }
  $("#page-error").hidden = true;
}

window.addEventListener("hashchange", route);
// after every script of the page has run (review.js, upload.js): the first route may need any of them
document.addEventListener("DOMContentLoaded", route);
