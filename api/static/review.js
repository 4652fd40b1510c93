// The review list (#/review): the items the model was unsure of, least certain first, each settled in
// one click; and the item page's note when an item needs review. A classic script after app.js: it uses
// app.js's helpers ($, el, text, api, state) and app.js's route() calls setupReview.
"use strict";

// --- review: the uncertain items, least certain first, each fixed in one click -----------
const pct = (x) => `${Math.round(x * 100)}%`;

// "Yes, it's a skirt" / "Yes, they're pants": the class's first name with the article it takes
const PLURAL = new Set(["pants", "shorts", "glasses", "tights"]);
function itsA(category) {
  const name = category.split(",")[0];
  if (PLURAL.has(name)) return `they're ${name}`;
  return `it's ${/^[aeiou]/.test(name) ? "an" : "a"} ${name}`;
}

// every class but the item's own, the model's alternatives first (with how sure it was of each)
function classOptions(item) {
  const alts = item.alternatives || [];
  const altIds = new Set(alts.map((a) => a.class_id));
  const groups = [];
  if (alts.length) {
    groups.push(el("optgroup", { label: "The model's other guesses" },
      ...alts.map((a) => el("option", { value: String(a.class_id), text: `${a.category} (${pct(a.confidence)})` }))));
  }
  groups.push(el("optgroup", { label: alts.length ? "Every other class" : "Every class" },
    ...state.categories.filter((c) => c.id !== item.class_id && !altIds.has(c.id))
      .map((c) => el("option", { value: String(c.id), text: c.name }))));
  return groups;
}

function reviewCard(item) {
  const titleId = "review-title-" + item.id;
  const li = el("li", { class: "review-card", "data-id": item.id, "data-category": item.category,
    "aria-labelledby": titleId });
  const actions = el("div", { class: "actions", role: "group", "aria-labelledby": titleId });
  const confirm = el("button", { type: "button", class: "confirm", text: `Yes, ${itsA(item.category)}` });
  confirm.addEventListener("click", () => fixItem(li, { class_id: item.class_id }, `confirmed as ${item.category}`));
  const reject = el("button", { type: "button", class: "not-garment secondary", text: "Not a garment" });
  reject.addEventListener("click", () => fixItem(li, { not_garment: true }, "marked as not a garment"));
  actions.append(confirm);
  for (const alt of item.alternatives) {
    const b = el("button", { type: "button", class: "alt secondary", "data-class-id": String(alt.class_id),
      text: `No, ${itsA(alt.category)} (${pct(alt.confidence)})` });
    b.addEventListener("click", () => fixItem(li, { class_id: alt.class_id }, `now ${alt.category}`));
    actions.append(b);
  }
  actions.append(reject);
  // any of the 23 classes, for when the model's guesses are all wrong (or it had none)
  const pickId = "review-pick-" + item.id;
  const select = el("select", { id: pickId, class: "pick" }, ...classOptions(item));
  const pick = el("form", { class: "pick-form" },
    el("label", { for: pickId, text: "Something else: " }), select,
    el("button", { type: "submit", class: "secondary", text: "Save" }));
  pick.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const cls = state.categories.find((c) => String(c.id) === select.value);
    fixItem(li, { class_id: Number(select.value) }, `now ${cls ? cls.name : select.value}`);
  });
  li.append(
    el("div", { class: "thumb checker" }, el("img", { src: item.cutout_signed_url, alt: "cut-out of the " + item.category })),
    el("div", { class: "body" },
      el("h2", { id: titleId, text: `Is it ${itsA(item.category).replace(/^it's |^they're /, "")}?` }),
      el("p", { text: `The model is ${pct(item.confidence)} sure.` }),
      el("a", { href: "#/items/" + item.id, text: "See it on its photo" }),
      actions, pick));
  return li;
}

async function fixItem(li, body, done) {
  for (const b of li.querySelectorAll("button")) b.disabled = true;
  try {
    const item = await api("/v1/items/" + li.dataset.id, { method: "PATCH", json: body });
    if (item.needs_review) throw new Error("the item still needs review");
    const next = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    renderReviewCount(Math.max(0, state.reviewCount - 1));
    text($("#review-message"), `Saved: ${done}.`);
    if (!$("#review-list").children.length && state.reviewCursor) await loadReview(false);
    $("#review-empty").hidden = $("#review-list").children.length > 0;
    // keep the keyboard where the work is: the next item's first choice, else the heading
    const target = next ? next.querySelector("button") : $("#review-heading");
    target.focus();
  } catch (e) {
    for (const b of li.querySelectorAll("button")) b.disabled = false;
    text($("#review-message"), "Not saved: " + e.message);
  }
}

async function loadReview(reset) {
  if (reset) { state.reviewCursor = null; $("#review-list").replaceChildren(); state.reviewGen++; }
  const gen = state.reviewGen;
  const q = new URLSearchParams({ needs_review: "true", limit: "24" });
  if (state.reviewCursor) q.set("cursor", state.reviewCursor);
  const page = await api("/v1/items?" + q.toString());
  if (gen !== state.reviewGen) return;  // the list was asked for anew (a new threshold) meanwhile
  $("#review-list").append(...page.items.map(reviewCard));
  state.reviewCursor = page.next_cursor;
  $("#review-more").hidden = !state.reviewCursor;
  $("#review-empty").hidden = $("#review-list").children.length > 0;
}

function renderThreshold(me) {
  $("#review-below").value = String(Math.round(me.review_below * 100));
  text($("#threshold-note"), me.review_below_custom ? `(the default is ${pct(me.review_below_default)})` : "(the default)");
  $("#threshold-default").hidden = !me.review_below_custom;
}

async function setThreshold(value) {
  try {
    const me = await askMe({ method: "PATCH", json: { review_below: value } });
    if (me) {  // else a newer answer draws the threshold and the count
      renderThreshold(me);
      renderReviewCount(me.items_needing_review);
      text($("#review-message"), `Now asking about items below ${pct(me.review_below)}.`);
    }
    await loadReview(true);
  } catch (e) {
    text($("#review-message"), "Not saved: " + e.message);
  }
}

$("#threshold-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setThreshold(Number($("#review-below").value) / 100);
});
$("#threshold-default").addEventListener("click", () => setThreshold(null));
$("#review-more").addEventListener("click", () => loadReview(false));

async function setupReview() {
  show("review");
  if (!state.categories.length) await loadCategories();
  state.galleryLoaded = false;  // answers here change items: the gallery reloads on the way back
  text($("#review-message"), "");
  const [me] = await Promise.all([refreshReviewCount(), loadReview(true)]);
  if (me) renderThreshold(me);
}

// an item the model was unsure of and nobody checked: the item page says so, and confirms in one click
function renderItemReview(item) {
  $("#item-review").hidden = !item.needs_review;
  $("#item").dataset.classId = String(item.class_id);
  if (!item.needs_review) return;
  text($("#item-review-text"), `Needs review: the model is only ${pct(item.confidence)} sure this is a ` +
    `${item.category}. Confirm it, pick the right class below, or say it is not a garment.`);
  text($("#item-confirm"), `Yes, ${itsA(item.category)}`);
}

$("#item-confirm").addEventListener("click", async () => {
  const id = $("#item").dataset.id;
  try {
    const item = await api("/v1/items/" + id, { method: "PATCH", json: { class_id: Number($("#item").dataset.classId) } });
    renderItemReview(item);
    text($("#item-message"), "Saved: confirmed as " + item.category);
  } catch (e) {
    text($("#item-message"), "Not saved: " + e.message);
  }
});

