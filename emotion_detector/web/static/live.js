// Live view: camera → sampled JPEG frames over /ws/live → boxes and labels drawn over the video.
// The video plays on its own; the overlay is redrawn every animation frame from the latest result, with
// boxes eased towards their newest position, so nothing waits on the network.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
// Far faces need the camera's pixels: frames go at up to 1280 px wide, fewer only while the round trip is slow.
const SEND_WIDTHS = [320, 480, 640, 960, 1280];
const MAX_IN_FLIGHT = 1;                 // back-pressure: the next frame leaves when the last answer came
const MIN_INTERVAL_MS = 66, MAX_INTERVAL_MS = 500;
// Frame size follows the round trip with hysteresis: smaller frames above SLOW_RTT_MS, larger again below
// FAST_RTT_MS, one step per WIDTH_STEP_EVERY_MS at most so that each step's effect is measured first.
const SLOW_RTT_MS = 250, FAST_RTT_MS = 150, WIDTH_STEP_EVERY_MS = 1000;

const $ = (id) => document.getElementById(id);
const video = $("video"), overlay = $("overlay"), context = overlay.getContext("2d");
const grab = document.createElement("canvas");

const state = {
  stream: null, socket: null, wantOpen: false, reconnectDelayMs: 500,
  sent: 0, answered: 0, sentAt: new Map(), rttMs: null,
  widthIndex: 2, intervalMs: 100, lastSendAt: 0, encoding: false, widthChangedAt: 0,
  faces: [], frameSize: [640, 480], drawn: new Map(), resultTimes: [],
};

function showProblem(text) { $("problem").textContent = text; $("problem").hidden = !text; }
function setConnection(text, kind) { const pill = $("connection"); pill.textContent = text; pill.className = "pill " + (kind || ""); }

// ---- camera ------------------------------------------------------------------------------------------

function explainCameraError(error) {
  if (!window.isSecureContext) return "The camera needs a secure page: open this site over https:// or on http://localhost.";
  switch (error && error.name) {
    case "NotAllowedError": return "Camera permission was denied. Allow camera access for this site (the camera icon in the address bar), then press Start again.";
    case "NotFoundError": case "OverconstrainedError": return "No camera was found. Connect a camera, or pick another one, and press Start.";
    case "NotReadableError": return "The camera is in use by another application or could not be started.";
    default: return "The camera could not be started: " + (error && error.message ? error.message : error);
  }
}

async function listCameras() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const select = $("camera"), chosen = select.value;
  select.replaceChildren(new Option("default camera", ""));
  devices.filter((d) => d.kind === "videoinput").forEach((d, i) => select.add(new Option(d.label || `camera ${i + 1}`, d.deviceId)));
  select.value = chosen;
}

async function start() {
  showProblem("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { showProblem(explainCameraError(null)); return; }
  const deviceId = $("camera").value;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { ...(deviceId ? { deviceId: { exact: deviceId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false,
    });
  } catch (error) {
    showProblem(explainCameraError(error));
    return;
  }
  video.srcObject = state.stream;
  $("hint").hidden = true;
  await video.play().catch(() => {});
  listCameras().catch(() => {});
  $("start").disabled = true; $("stop").disabled = false;
  state.wantOpen = true;
  connect();
}

function stop() {
  state.wantOpen = false;
  if (state.socket) closeSocket(state.socket);
  state.socket = null;
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null; video.srcObject = null; state.faces = []; state.drawn.clear();
  $("hint").hidden = false;
  $("start").disabled = false; $("stop").disabled = true;
  setConnection("not connected");
  renderFaceList([]);
}

// ---- websocket ---------------------------------------------------------------------------------------

// A socket closed while it is still connecting makes the browser log an error ("closed before the
// connection is established"): Stop then closes it as soon as it opens.
function closeSocket(socket) {
  if (socket.readyState === WebSocket.CONNECTING) socket.addEventListener("open", () => socket.close(), { once: true });
  else socket.close();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  setConnection("connecting…", "warn");
  socket.onopen = () => {
    if (state.socket !== socket) return;  // stopped meanwhile
    state.reconnectDelayMs = 500;
    state.sent = 0; state.answered = 0; state.sentAt.clear();
    setConnection("connected", "ok");
  };
  socket.onmessage = (event) => { if (state.socket === socket) handleMessage(JSON.parse(event.data)); };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    state.socket = null;
    if (!state.wantOpen) return;
    setConnection(`connection lost — reconnecting in ${(state.reconnectDelayMs / 1000).toFixed(1)} s`, "warn");
    setTimeout(() => { if (state.wantOpen && !state.socket) connect(); }, state.reconnectDelayMs);
    state.reconnectDelayMs = Math.min(state.reconnectDelayMs * 2, 5000);
  };
}

function handleMessage(message) {
  if (message.type === "hello") {
    $("detector").textContent = message.detector.name;
    $("detector-model").textContent = `(${message.detector.model})`;
    return;
  }
  if (message.type !== "result" && message.type !== "error") return;
  if (typeof message.frame === "number") acknowledge(message.frame);
  if (message.type === "error") {
    setConnection(message.code === "model_unavailable" ? "model server unavailable — retrying" : `frame error: ${message.code}`, "warn");
    return;
  }
  setConnection("connected", "ok");
  state.faces = message.faces;
  state.frameSize = [message.width, message.height];
  showDetection(message);
  const now = performance.now();
  state.resultTimes.push(now);
  while (state.resultTimes.length && now - state.resultTimes[0] > 2000) state.resultTimes.shift();
  $("fps").textContent = (state.resultTimes.length / 2).toFixed(1);
  renderFaceList(message.faces);
  record(message.faces, message.width, message.height);
}

// The smallest face looked for, in the camera's pixels (frames may be sent smaller), and why nobody is boxed.
function showDetection(message) {
  if (!message.detection) return;
  const camera = video.videoWidth || message.width;
  const minFace = Math.round(message.detection.min_face_px * camera / message.width);
  $("min-face").textContent = `${minFace} px`;
  $("no-faces").textContent = message.faces.length ? "" :
    `No faces found. Faces smaller than ${minFace} px high are not looked for: come closer to the camera, or use a camera with more pixels.`;
}

function acknowledge(frame) {
  const sentAt = state.sentAt.get(frame);
  for (const n of state.sentAt.keys()) if (n <= frame) state.sentAt.delete(n);  // older ones were dropped
  state.answered = Math.max(state.answered, frame);
  if (sentAt === undefined) return;
  const rtt = performance.now() - sentAt;
  state.rttMs = state.rttMs === null ? rtt : 0.8 * state.rttMs + 0.2 * rtt;
  $("latency").textContent = state.rttMs.toFixed(0);
  adapt();
}

// With one frame in flight the page cannot get more than one answer per round trip, so the send interval
// simply follows the round trip (up as well as down, at once). The frame size steps down while the round
// trip is slow and climbs back as soon as it is fast again.
function adapt(now = performance.now()) {
  state.intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, state.rttMs));
  if (now - state.widthChangedAt < WIDTH_STEP_EVERY_MS) return;
  if (state.rttMs > SLOW_RTT_MS && state.widthIndex > 0) state.widthIndex -= 1;
  else if (state.rttMs < FAST_RTT_MS && state.widthIndex < SEND_WIDTHS.length - 1) state.widthIndex += 1;
  else return;
  state.widthChangedAt = now;
}

// ---- sampling ----------------------------------------------------------------------------------------

function maybeSend(now) {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN || state.encoding || !video.videoWidth) return;
  if (state.sent - state.answered >= MAX_IN_FLIGHT || now - state.lastSendAt < state.intervalMs) return;
  const width = Math.min(SEND_WIDTHS[state.widthIndex], video.videoWidth);
  const height = Math.round(width * video.videoHeight / video.videoWidth);
  grab.width = width; grab.height = height;
  grab.getContext("2d").drawImage(video, 0, 0, width, height);
  state.encoding = true; state.lastSendAt = now;
  grab.toBlob(async (blob) => {
    state.encoding = false;
    const open = () => state.socket === socket && socket.readyState === WebSocket.OPEN;
    if (!blob || !open()) return;
    const bytes = await blob.arrayBuffer();
    if (!open()) return;  // Stop pressed while the frame was read: sending now would be a console error
    state.sent += 1;
    state.sentAt.set(state.sent, performance.now());
    socket.send(bytes);
    $("sendsize").textContent = `${width}×${height} every ${state.intervalMs.toFixed(0)} ms`;
  }, "image/jpeg", 0.8);
}

// ---- drawing -----------------------------------------------------------------------------------------

function draw(now) {
  maybeSend(now);
  const rect = overlay.getBoundingClientRect();
  if (overlay.width !== Math.round(rect.width) || overlay.height !== Math.round(rect.height)) {
    overlay.width = Math.round(rect.width); overlay.height = Math.round(rect.height);
  }
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (video.videoWidth && state.faces.length) {
    // The video is letterboxed (object-fit: contain); map frame pixels onto its displayed area.
    const scale = Math.min(overlay.width / video.videoWidth, overlay.height / video.videoHeight);
    const offsetX = (overlay.width - video.videoWidth * scale) / 2, offsetY = (overlay.height - video.videoHeight * scale) / 2;
    const toVideo = video.videoWidth / state.frameSize[0];
    const seen = new Set();
    const placed = state.faces.map((face, index) => {
      const key = face.id !== undefined ? `id${face.id}` : `new${index}`;
      seen.add(key);
      const target = face.box.map((v) => v * toVideo * scale);
      const previous = state.drawn.get(key);
      const box = previous ? previous.map((v, i) => v + (target[i] - v) * 0.35) : target;  // ease towards the newest box
      state.drawn.set(key, box);
      return { face, x: box[0] + offsetX, y: box[1] + offsetY, w: box[2] - box[0], h: box[3] - box[1] };
    });
    placed.forEach((one) => drawFace(one.face, one.x, one.y, one.w, one.h, placed.filter((other) => other !== one)));
    for (const key of state.drawn.keys()) if (!seen.has(key)) state.drawn.delete(key);
  }
  requestAnimationFrame(draw);
}

// The probability bars under a face: one row per expression, its name, then its bar.
const BAR_ROW_PX = 11, BAR_GAP_PX = 1, BAR_NAME_PX = 52;
const BARS_HEIGHT_PX = 4 + EMOTIONS.length * (BAR_ROW_PX + BAR_GAP_PX);

// Whether a label at (left, top, width, height) would cover another face (its box and the bars under it).
function coversAnother(left, top, width, height, others) {
  return others.some((o) => left < o.x + o.w && o.x < left + width && top < o.y + o.h + BARS_HEIGHT_PX && o.y - 4 < top + height);
}

function drawFace(face, x, y, w, h, others) {
  const emotion = face.emotion.label, colour = face.emotion.uncertain ? UNCERTAIN_COLOUR : COLOURS[emotion] || "#fff";
  context.lineWidth = 3; context.strokeStyle = colour; context.strokeRect(x, y, w, h);
  const title = `${face.id !== undefined ? "#" + face.id + " " : ""}${expressionText(face.emotion)}`;
  const detail = `age ~${face.age.years.toFixed(0)} · ${face.gender.label}`;
  context.font = "600 15px system-ui, sans-serif";
  const labelWidth = Math.max(context.measureText(title).width, context.measureText(detail).width) + 12;
  const top = Math.max(0, y - 42), left = Math.max(0, Math.min(x, overlay.width - labelWidth));
  if (coversAnother(left, top, labelWidth, 40, others)) {
    // Faces close together (or a small screen): the full label would hide another face, so only the track's
    // number and expression (or just the number); the list under the video has the rest.
    const short = face.id !== undefined ? `#${face.id}` : "?";
    const named = `${short} ${face.emotion.uncertain ? "uncertain" : emotion}`;
    const fits = (text) => !coversAnother(Math.max(0, Math.min(x, overlay.width - context.measureText(text).width - 12)), Math.max(0, y - 24),
      context.measureText(text).width + 12, 22, others);
    const text = fits(named) ? named : short;
    const width = context.measureText(text).width + 12, shortTop = Math.max(0, y - 24);
    const shortLeft = Math.max(0, Math.min(x, overlay.width - width));
    context.fillStyle = "rgba(0,0,0,.65)"; context.fillRect(shortLeft, shortTop, width, 22);
    context.fillStyle = "#fff"; context.fillText(text, shortLeft + 6, shortTop + 16);
  } else {
    context.fillStyle = "rgba(0,0,0,.65)"; context.fillRect(left, top, labelWidth, 40);
    context.fillStyle = "#fff"; context.fillText(title, left + 6, top + 16);
    context.font = "13px system-ui, sans-serif"; context.fillText(detail, left + 6, top + 34);
  }
  // A small bar chart of all seven expressions, each bar named: under the box, or beside it where the picture
  // ends below it (a face filling a phone's screen), on the side with room.
  const barWidth = Math.max(50, Math.min(w - BAR_NAME_PX, 110)), chartWidth = BAR_NAME_PX + barWidth;
  let barsX = x, barsY = y + h + 4;
  if (barsY + BARS_HEIGHT_PX > overlay.height) {
    barsY = Math.max(0, Math.min(y, overlay.height - BARS_HEIGHT_PX));
    barsX = x + w + 4 + chartWidth <= overlay.width ? x + w + 4 : Math.max(0, x - 4 - chartWidth);
  }
  context.font = "10px system-ui, sans-serif"; context.textBaseline = "middle";
  EMOTIONS.forEach((name, i) => {
    const p = face.emotion.probabilities[name] || 0, rowY = barsY + i * (BAR_ROW_PX + BAR_GAP_PX);
    context.fillStyle = "rgba(0,0,0,.6)"; context.fillRect(barsX, rowY, chartWidth, BAR_ROW_PX);
    context.fillStyle = "#fff"; context.fillText(name, barsX + 3, rowY + BAR_ROW_PX / 2);
    context.fillStyle = COLOURS[name]; context.fillRect(barsX + BAR_NAME_PX, rowY + 2, barWidth * p, BAR_ROW_PX - 4);
  });
  context.textBaseline = "alphabetic";
}

function renderFaceList(faces) {
  $("faces").replaceChildren(...faces.map((face) => {
    const item = document.createElement("li");
    item.className = "face";
    item.dataset.emotion = face.emotion.label;
    item.dataset.uncertain = face.emotion.uncertain ? "true" : "false";
    item.textContent = `${face.id !== undefined ? "#" + face.id : "new face"}: ${expressionText(face.emotion)}, ` +
      `age ~${face.age.years.toFixed(0)}, ${face.gender.label}`;
    return item;
  }));
}

// ---- recording ---------------------------------------------------------------------------------------
// With "Record results" on, every result is kept in this tab (faces only: boxes, labels, numbers — never
// frames) and summed up per track id; it downloads as CSV (one row per face per result, the CLI's columns with
// the time since the recording started) or JSON (the summary and every result, with the camera frame's size).

const TRACK_GAP_MS = 1000;  // a track unseen for longer than this is not counted as seen in between
const MAX_RECORDED_RESULTS = 50000;  // about 80 minutes at 10 results/s, some tens of MB in the tab: then it stops
const CSV_COLUMNS = ["time_ms", "frame", "id", "x1", "y1", "x2", "y2", "score", "emotion", "emotion_confidence",
  ...EMOTIONS.map((e) => `p_${e}`), "age_years", "gender", "gender_confidence"];

const recording = { on: false, startedAt: null, startedMs: 0, results: [], faceRows: 0, tracks: new Map(), renderedAt: 0, renderPending: false, full: false };

// Boxes arrive in pixels of the frame that was sent, whose size follows the round trip: they are kept in
// pixels of the camera's own frames, so that every row of a recording measures the same way.
function inCameraPixels(faces, sentWidth, sentHeight) {
  const width = video.videoWidth || sentWidth, height = video.videoHeight || sentHeight, scale = width / sentWidth;
  return {
    width, height,
    faces: faces.map((face) => ({ ...face, box: face.box.map((v) => Math.round(v * scale * 10) / 10) })),
  };
}

function record(sentFaces, sentWidth, sentHeight) {
  if (!recording.on) return;
  if (recording.results.length >= MAX_RECORDED_RESULTS) {
    recording.on = false; recording.full = true; $("record").checked = false;
    renderRecording();
    return;
  }
  const now = performance.now();
  if (recording.startedAt === null) { recording.startedAt = new Date(); recording.startedMs = now; }
  const timeMs = Math.round(now - recording.startedMs);
  const { width, height, faces } = inCameraPixels(sentFaces, sentWidth, sentHeight);
  recording.results.push({ time_ms: timeMs, frame: recording.results.length, width, height, faces });
  recording.faceRows += faces.length;  // counted as they come: the status line is redrawn twice a second
  faces.forEach((face) => {
    // A face gets its track id once the tracker has confirmed it; its first results have none.
    const key = face.id !== undefined ? String(face.id) : "untracked";
    let track = recording.tracks.get(key);
    if (!track) {
      track = { id: face.id !== undefined ? face.id : null, firstMs: timeMs, lastMs: timeMs, seenMs: 0, results: 0, expressions: {}, ageSum: 0, genders: {} };
      recording.tracks.set(key, track);
    }
    const gap = timeMs - track.lastMs;
    if (gap <= TRACK_GAP_MS) track.seenMs += gap;
    track.lastMs = timeMs; track.results += 1;
    const expression = face.emotion.uncertain ? "uncertain" : face.emotion.label;
    track.expressions[expression] = (track.expressions[expression] || 0) + 1;
    track.ageSum += face.age.years;
    track.genders[face.gender.label] = (track.genders[face.gender.label] || 0) + 1;
  });
  // The table need not change on every result: at most twice a second, and once more after the last one.
  if (now - recording.renderedAt > 500) renderRecording();
  else if (!recording.renderPending) {
    recording.renderPending = true;
    setTimeout(() => { recording.renderPending = false; renderRecording(); }, 500);
  }
}

function summary() {
  return [...recording.tracks.values()].map((t) => ({
    id: t.id,
    first_ms: t.firstMs,
    last_ms: t.lastMs,
    seen_s: Math.round(t.seenMs / 100) / 10,
    results: t.results,
    expressions: Object.fromEntries(Object.entries(t.expressions).sort((a, b) => b[1] - a[1])
      .map(([label, n]) => [label, Math.round(1000 * n / t.results) / 1000])),
    age_years_mean: Math.round(10 * t.ageSum / t.results) / 10,
    gender: Object.entries(t.genders).sort((a, b) => b[1] - a[1])[0][0],
  }));
}

function renderRecording() {
  recording.renderedAt = performance.now();
  const n = recording.results.length, rows = recording.faceRows;
  const last = n ? recording.results[n - 1].time_ms : 0;
  $("record-status").textContent = n || recording.on
    ? `${recording.on ? "Recording" : "Recorded"}: ${n} result${n === 1 ? "" : "s"}, ${rows} face row${rows === 1 ? "" : "s"}, ` +
      `${(last / 1000).toFixed(1)} s — results only, no frames.` +
      (recording.full ? ` It stopped at ${MAX_RECORDED_RESULTS} results: download it, then clear it to record more.` : "")
    : "Not recording. A recording keeps only the results (boxes, labels, numbers) in this browser tab, never the camera's frames, until you download or clear it.";
  $("download-csv").disabled = $("download-json").disabled = $("clear-recording").disabled = n === 0;
  const tracks = summary();
  $("summary").hidden = tracks.length === 0;
  $("summary-rows").replaceChildren(...tracks.map((t) => {
    const row = document.createElement("tr");
    row.dataset.id = t.id === null ? "" : String(t.id);
    const cell = (text) => { const td = document.createElement("td"); td.textContent = text; return td; };
    const shares = document.createElement("td");
    const list = document.createElement("span");
    list.className = "shares";
    Object.entries(t.expressions).forEach(([label, share]) => {
      const item = document.createElement("span"), swatch = document.createElement("i");
      swatch.className = "swatch"; swatch.style.background = COLOURS[label] || UNCERTAIN_COLOUR;
      item.append(swatch, `${label} ${(share * 100).toFixed(0)}%`);
      list.append(item);
    });
    shares.append(list);
    row.append(cell(t.id === null ? "not yet tracked" : `#${t.id}`), cell(`${t.seen_s.toFixed(1)} s`), shares,
      cell(`~${t.age_years_mean.toFixed(0)}, ${t.gender}`));
    return row;
  }));
}

function csvCell(value) {
  const text = value === undefined || value === null ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function recordingCsv() {
  const lines = [CSV_COLUMNS.join(",")];
  recording.results.forEach((result) => result.faces.forEach((face) => {
    lines.push([result.time_ms, result.frame, face.id, ...face.box, face.score, face.emotion.label, face.emotion.confidence,
      ...EMOTIONS.map((e) => face.emotion.probabilities[e] || 0), face.age.years, face.gender.label, face.gender.confidence]
      .map(csvCell).join(","));
  }));
  return lines.join("\r\n") + "\r\n";
}

function recordingJson() {
  const n = recording.results.length;
  return {
    started_at: recording.startedAt ? recording.startedAt.toISOString() : null,
    duration_ms: n ? recording.results[n - 1].time_ms : 0,
    note: "Expressions as a model sees them, not what anyone feels; age and gender are rough apparent estimates. " +
      "Boxes are in pixels of the camera's frames (each result's width x height). No frames are included.",
    summary: summary(),
    results: recording.results,
  };
}


function downloadName(extension) {
  const at = (recording.startedAt || new Date()).toISOString().slice(0, 19).replace(/[:T]/g, "-");
  return `emotion-detector-live-${at}.${extension}`;
}

$("record").addEventListener("change", () => { recording.on = $("record").checked; renderRecording(); });
$("download-csv").addEventListener("click", () => download(downloadName("csv"), recordingCsv(), "text/csv"));
$("download-json").addEventListener("click", () => download(downloadName("json"), JSON.stringify(recordingJson(), null, 2), "application/json"));
$("clear-recording").addEventListener("click", () => {
  recording.startedAt = null; recording.results = []; recording.faceRows = 0; recording.tracks.clear(); recording.full = false;
  renderRecording();
});

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) navigator.mediaDevices.addEventListener("devicechange", () => listCameras().catch(() => {}));
requestAnimationFrame(draw);
