// Loose photos (many chosen at once, or a folder) from the page. The browser zips them with client-zip
// (vendored from npm: api/static/vendor, scripts/vendor.sh) as a stream and sends the stream through a
// resumable upload session (POST /v1/upload-sessions, api/resumable.py), one chunk or part at a time:
// 300 phone photos (about 1 GB) are never in memory at once, only the chunk on its way. A dropped
// connection costs a few retries: the page asks the session what arrived and goes on from there, making
// the same zip again and skipping what the server has (the zip's bytes depend only on the files).
// A page reloaded mid-upload resumes the same session when the same photos are chosen again.
import { makeZip, predictLength } from "./vendor/client-zip/index.js";

const PHOTO = /\.(jpe?g|png|webp|heic|heif)$/i;
const CHUNK = 2 * 1024 * 1024; // bytes per PATCH (folder storage; bench/page_upload.py: less memory than 8 MiB); S3 parts are the session's part_size
const WAITS = [1000, 3000, 10000, 30000]; // ms before each new try after a network error; then it stops

class Refused extends Error {}  // the API said no (an HTTP error): retrying will not help

// the photos among the files, each under a name of its own in the zip (a folder's subfolders kept)
export function photoEntries(files) {
  const seen = new Set();
  const out = [];
  for (const file of files) {
    const path = file.webkitRelativePath || file.name;
    if (!PHOTO.test(path)) continue;
    let name = path;
    for (let n = 2; seen.has(name.toLowerCase()); n++) name = path.replace(/(\.[^.]+)$/, ` (${n})$1`);
    seen.add(name.toLowerCase());
    out.push({ name, input: file, lastModified: new Date(file.lastModified), size: file.size });
  }
  return out;
}

// the zip's bytes from `start` in slices of `size` (the last one shorter), made as they are asked for
async function* slices(entries, start, size) {
  const reader = makeZip(entries).getReader();
  let pos = 0; // bytes of the zip read so far
  let parts = [], have = 0;
  const take = () => {
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const head = parts[0], n = Math.min(head.length, size - at);
      out.set(head.subarray(0, n), at);
      at += n;
      if (n === head.length) parts.shift(); else parts[0] = head.subarray(n);
    }
    have -= size;
    return out;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      let v = value;
      if (pos + v.length <= start) { pos += v.length; continue; } // the server has these already
      if (pos < start) v = v.subarray(start - pos);
      pos += value.length;
      parts.push(v);
      have += v.length;
      while (have >= size) yield take();
    }
    if (have) { size = have; yield take(); }
  } finally {
    reader.cancel().catch(() => {});
  }
}

async function call(token, method, path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers || {});
  if (opts.json !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, { method, headers, body: opts.body }); // a network error throws TypeError
  if (r.ok || (opts.ok || []).includes(r.status)) return r;
  const body = await r.json().catch(() => ({}));
  if ([502, 503, 504].includes(r.status)) throw new TypeError("HTTP " + r.status); // a gateway: try again
  throw new Refused((body.error && body.error.message) || "HTTP " + r.status);
}

// folder storage: PATCH from the offset the session has (tus)
async function sendChunks(token, sess, entries, progress) {
  let offset = sess.offset;
  for await (const chunk of slices(entries, offset, CHUNK)) {
    const r = await call(token, "PATCH", `/v1/upload-sessions/${sess.id}`, { body: chunk, ok: [409],
      headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" } });
    if (r.status === 409) throw new TypeError("the session is elsewhere"); // read it again and go on from there
    offset = Number(r.headers.get("Upload-Offset"));
    progress(offset);
  }
}

// S3 storage: PUT the parts the bucket lacks straight to it, each to a URL the API signs for it
async function sendParts(token, sess, entries, progress) {
  const missing = new Set(sess.missing_parts);
  let n = 0, done = sess.size - sess.missing_parts.reduce((a, k) => a + Math.min(sess.part_size, sess.size - (k - 1) * sess.part_size), 0);
  for await (const part of slices(entries, 0, sess.part_size)) {
    n += 1;
    if (!missing.has(n)) continue;
    const urls = await (await call(token, "POST", `/v1/upload-sessions/${sess.id}/parts`, { json: { numbers: [n] } })).json();
    const r = await fetch(urls.parts[0].url, { method: "PUT", body: part });
    if (!r.ok) throw (r.status >= 500 ? new TypeError("storage: HTTP " + r.status) : new Refused("storage refused a part: HTTP " + r.status));
    done += part.length;
    progress(done);
  }
}

function fingerprint(entries) {
  let h = 2166136261; // FNV-1a over the names, sizes and times: the same photos chosen again, the same key
  for (const e of entries) {
    for (const c of `${e.name}\u0000${e.size}\u0000${e.lastModified.getTime()}\u0000`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  }
  return `wardrobe-upload:${entries.length}:${(h >>> 0).toString(16)}`;
}

async function openSession(token, key, size) {
  const kept = localStorage.getItem(key);
  if (kept) {
    const r = await call(token, "GET", `/v1/upload-sessions/${kept}`, { ok: [404] });
    if (r.status === 200) return r.json();
    localStorage.removeItem(key); // expired, or completed and gone
  }
  const r = await call(token, "POST", "/v1/upload-sessions", { json: { filename: "photos.zip", size } });
  const sess = await r.json();
  localStorage.setItem(key, sess.id);
  return sess;
}

// upload `files` (the photos among them) as one zip; `report(bytesSent, bytesTotal, photos, note)` as it
// goes. The job, as POST /v1/uploads answers it; an Error with the API's message when refused.
export async function uploadPhotos(token, files, report) {
  const entries = photoEntries(files);
  if (!entries.length) throw new Refused("none of the files chosen is a photo (.jpg, .png, .webp, .heic)");
  const size = Number(predictLength(entries));
  const key = fingerprint(entries);
  report(0, size, entries.length, "");
  let sess = null;
  for (let attempt = 0; ; attempt++) {
    try {
      sess = sess ? await (await call(token, "GET", `/v1/upload-sessions/${sess.id}`)).json()
        : await openSession(token, key, size);
      if (sess.status === "open") {
        report(sess.offset, size, entries.length, attempt ? "resumed" : "");
        const send = sess.mode === "s3_multipart" ? sendParts : sendChunks;
        await send(token, sess, entries, (sent) => report(sent, size, entries.length, ""));
      }
      const job = await (await call(token, "POST", `/v1/upload-sessions/${sess.id}/complete`)).json();
      localStorage.removeItem(key);
      return job;
    } catch (e) {
      if (e instanceof Refused || attempt >= WAITS.length) {
        if (e instanceof Refused) throw e;
        throw new Error("the connection keeps failing; choose the same photos again to go on from where it stopped");
      }
      report(null, size, entries.length, `connection lost: trying again in ${WAITS[attempt] / 1000} s`);
      await new Promise((res) => setTimeout(res, WAITS[attempt]));
    }
  }
}

window.wardrobeUploadPhotos = uploadPhotos; // app.js is a classic script: it finds the module here
