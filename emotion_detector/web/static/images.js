// Image page: every dropped or chosen image is posted to POST /api/v1/analyze (one at a time, in order), shown
// with its faces' boxes and labels drawn on a canvas over it and listed below it; all answers download as one
// JSON file built here in the browser. Nothing is kept on the server.
"use strict";


const $ = (id) => document.getElementById(id);
const MAX_BYTES = Number($("drop").dataset.maxBytes);  // the server's limit per image
const results = [];   // one entry per image, in the order they were added: {file, status, answer | error}
let queue = Promise.resolve();

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function megabytes(bytes) { return `${(bytes / 1024 / 1024).toFixed(1)} MB`; }

function faceColour(face) { return face.emotion.uncertain ? UNCERTAIN_COLOUR : COLOURS[face.emotion.label] || "#fff"; }

// ---- analysing -----------------------------------------------------------------------------------------

async function analyze(file) {
  const body = new FormData();
  body.append("image", file, file.name);
  let answer;
  try {
    answer = await fetch("/api/v1/analyze", { method: "POST", body, headers: { "X-CSRFToken": CSRF_TOKEN } });
  } catch (error) {
    return { error: { code: "network", message: "The server could not be reached: " + error.message } };
  }
  let json = null;
  try { json = await answer.json(); } catch (error) { /* a proxy's HTML error page, say */ }
  if (answer.ok && json && Array.isArray(json.faces)) return { answer: json };
  if (json && json.error) {
    // The server's words for an oversized body are generic: say by how much this file is over. A signed-in session that has ended answers 401: the page's person signs in again rather than sends a key.
    const tooLarge = answer.status === 413 && file.size > MAX_BYTES;
    if (tooLarge) return { error: { ...json.error, message: `${json.error.message} (${megabytes(file.size)}; the limit is ${megabytes(MAX_BYTES)})` } };
    if (answer.status === 401) return { error: { ...json.error, message: "You are signed out: reload the page to sign in again." } };
    return { error: json.error };
  }
  return { error: { code: `http_${answer.status}`, message: `The server answered ${answer.status} ${answer.statusText}`.trim() } };
}

function addFiles(files) {
  for (const file of files) {
    const entry = { file, status: "waiting", answer: null, error: null, view: renderEntry(file) };
    results.push(entry);
    queue = queue.then(() => analyzeEntry(entry));
  }
  updateStatus();
}

async function analyzeEntry(entry) {
  entry.status = "analysing";
  entry.view.status.textContent = "analysing…";
  updateStatus();
  const outcome = await analyze(entry.file);
  entry.answer = outcome.answer || null;
  entry.error = outcome.error || null;
  entry.status = entry.error ? "failed" : "done";
  showOutcome(entry);
  updateStatus();
}

// ---- showing -------------------------------------------------------------------------------------------

function renderEntry(file) {
  const article = element("article", "image-result");
  article.dataset.status = "waiting";
  const head = element("header", "image-head");
  const name = element("strong", "image-name", file.name);
  const status = element("span", "pill", "waiting");
  head.append(name, status);
  const picture = element("div", "picture");
  const img = element("img");
  img.alt = file.name;
  const canvas = element("canvas", "boxes");
  canvas.setAttribute("aria-hidden", "true");
  picture.append(img, canvas);
  const problem = element("p", "problem");
  problem.setAttribute("role", "alert");
  problem.hidden = true;
  const list = element("ol", "faces image-faces");
  const body = element("div", "image-body");
  body.append(picture, list);
  article.append(head, problem, body);
  $("images").append(article);
  if (file.type.startsWith("image/")) {
    img.src = URL.createObjectURL(file);
  } else {
    picture.hidden = true;  // nothing a browser could show; the server says what is wrong with it
  }
  const view = { article, status, img, canvas, picture, problem, list, faces: [] };
  img.addEventListener("load", () => draw(view));
  img.addEventListener("error", () => { picture.hidden = true; });
  new ResizeObserver(() => draw(view)).observe(picture);
  return view;
}

function showOutcome(entry) {
  const view = entry.view;
  view.article.dataset.status = entry.status;
  if (entry.error) {
    view.status.textContent = "failed";
    view.status.className = "pill bad";
    view.problem.textContent = entry.error.message;
    view.problem.dataset.code = entry.error.code;
    view.problem.hidden = false;
    view.picture.classList.add("failed");
    return;
  }
  const { faces, width, height, detection, message } = entry.answer;
  view.faces = faces;
  view.frameSize = [width, height];
  view.status.textContent = faces.length === 1 ? "1 face" : `${faces.length} faces`;
  view.status.className = faces.length ? "pill ok" : "pill";
  // An empty answer says why: the smallest face looked for in this picture, and what to try.
  if (!faces.length) view.list.append(element("li", "muted no-face", message || "No face found in this image."));
  faces.forEach((face, index) => {
    const item = element("li", "face");
    item.dataset.emotion = face.emotion.label;
    item.dataset.uncertain = face.emotion.uncertain ? "true" : "false";
    const swatch = element("i", "swatch");
    swatch.style.background = faceColour(face);
    item.append(swatch, element("b", "", `Face ${index + 1}`),
      document.createTextNode(`: ${expressionText(face.emotion)}, age ~${face.age.years.toFixed(0)}, ` +
        `${face.gender.label} (${(face.gender.confidence * 100).toFixed(0)}%)`));
    view.list.append(item);
  });
  if (detection) {
    view.list.append(element("li", "muted detection",
      `Detector: ${detection.detector}, faces from ${Math.round(detection.min_face_px)} px high.`));
  }
  draw(view);
}

// The canvas covers the displayed image at the screen's resolution, so labels keep the same legible size
// whether the picture is shown small or large.
function draw(view) {
  const { img, canvas, faces } = view;
  const rect = img.getBoundingClientRect();
  if (!rect.width || !img.naturalWidth) return;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(rect.width * ratio); canvas.height = Math.round(rect.height * ratio);
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, rect.width, rect.height);
  if (!faces.length) return;
  const scaleX = rect.width / view.frameSize[0], scaleY = rect.height / view.frameSize[1];
  const boxes = faces.map((face) => {
    const [x1, y1, x2, y2] = face.box;
    return { x: x1 * scaleX, y: y1 * scaleY, w: (x2 - x1) * scaleX, h: (y2 - y1) * scaleY };
  });
  faces.forEach((face, index) => {
    const { x, y, w, h } = boxes[index], others = boxes.filter((_, i) => i !== index);
    context.lineWidth = 2.5; context.strokeStyle = faceColour(face); context.strokeRect(x, y, w, h);
    const title = `${index + 1} ${expressionText(face.emotion)}`;
    const detail = `age ~${face.age.years.toFixed(0)} · ${face.gender.label}`;
    context.font = "600 13px system-ui, sans-serif";
    const labelWidth = Math.max(context.measureText(title).width, context.measureText("age ~00 · female").width) + 10;
    // Above the box, else below it, where it fits on the picture and hides no other face; never off the
    // picture's right edge. Where neither does (a group, a small screen), only the face's number, which the
    // list explains.
    const left = Math.max(0, Math.min(x, rect.width - labelWidth));
    const free = (top) => top >= 0 && top + 34 <= rect.height &&
      !others.some((o) => left < o.x + o.w && o.x < left + labelWidth && top < o.y + o.h && o.y < top + 34);
    const top = [y - 36, y + h + 2].find(free);
    if (top === undefined) {
      const badge = `${index + 1}`, badgeWidth = context.measureText(badge).width + 10;
      const badgeTop = y >= 20 ? y - 20 : y + h + 20 <= rect.height ? y + h + 1 : y + 2;
      context.fillStyle = "rgba(0,0,0,.7)"; context.fillRect(x, badgeTop, badgeWidth, 19);
      context.fillStyle = "#fff"; context.fillText(badge, x + 5, badgeTop + 14);
      return;
    }
    context.fillStyle = "rgba(0,0,0,.7)"; context.fillRect(left, top, labelWidth, 34);
    context.fillStyle = "#fff"; context.fillText(title, left + 5, top + 14);
    context.font = "12px system-ui, sans-serif"; context.fillText(detail, left + 5, top + 29);
  });
}

function updateStatus() {
  const done = results.filter((r) => r.status === "done"), failed = results.filter((r) => r.status === "failed");
  const pending = results.length - done.length - failed.length;
  const faces = done.reduce((n, r) => n + r.answer.faces.length, 0);
  const parts = [`${results.length} image${results.length === 1 ? "" : "s"}`, `${faces} face${faces === 1 ? "" : "s"}`];
  if (failed.length) parts.push(`${failed.length} failed`);
  if (pending) parts.push(`${pending} analysing`);
  $("image-status").textContent = results.length ? parts.join(" · ") : "No images yet.";
  $("download-json").disabled = pending > 0 || !results.length;
  $("clear").disabled = pending > 0 || !results.length;
}

// ---- download ------------------------------------------------------------------------------------------

function exportJson() {
  return {
    generated_at: new Date().toISOString(),
    note: "Expressions as a model sees them, not what anyone feels; age and gender are rough apparent estimates.",
    images: results.map((r) => (r.error
      ? { file: r.file.name, bytes: r.file.size, error: r.error }
      : { file: r.file.name, bytes: r.file.size, width: r.answer.width, height: r.answer.height, faces: r.answer.faces,
          detection: r.answer.detection, ...(r.answer.message ? { message: r.answer.message } : {}) })),
  };
}


function clearAll() {
  for (const r of results) if (r.view.img.src.startsWith("blob:")) URL.revokeObjectURL(r.view.img.src);
  results.length = 0;
  $("images").replaceChildren();
  updateStatus();
}

// ---- input ---------------------------------------------------------------------------------------------

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault(); drop.classList.remove("over");
  addFiles([...event.dataTransfer.files]);
});
drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("files").click(); } });
$("files").addEventListener("change", () => { addFiles([...$("files").files]); $("files").value = ""; });
$("download-json").addEventListener("click", () => download("emotion-detector-images.json", JSON.stringify(exportJson(), null, 2), "application/json"));
$("clear").addEventListener("click", clearAll);
