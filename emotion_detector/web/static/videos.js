// Videos page: upload (drag and drop, file picker or webcam recording) with progress, and the list of
// past videos, refreshed while any of them is still being analysed.
"use strict";

const $ = (id) => document.getElementById(id);

function upload(file, name) {
  const form = new FormData();
  form.append("video", file, name);
  const request = new XMLHttpRequest();
  request.open("POST", `/api/v1/videos?blur_faces=${$("blur-faces").checked}`);
  request.setRequestHeader("X-CSRFToken", CSRF_TOKEN);
  $("upload-progress").hidden = false;
  $("upload-progress").value = 0;
  $("upload-status").textContent = `Uploading ${name}…`;
  request.upload.onprogress = (event) => { if (event.lengthComputable) $("upload-progress").value = event.loaded / event.total; };
  request.onload = () => {
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (_) { /* not JSON: reported below */ }
    if (request.status === 202) {
      $("upload-status").textContent = "Uploaded — analysing…";
      location.href = `/videos/${body.id}`;
    } else {
      $("upload-progress").hidden = true;
      $("upload-status").textContent = `Not accepted: ${body.error ? body.error.message : `HTTP ${request.status}`}`;
    }
  };
  request.onerror = () => { $("upload-status").textContent = "The upload failed (network error). Try again."; };
  request.send(form);
}

// ---- drag and drop, file picker ----------------------------------------------------------------------

const drop = $("drop");
["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) upload(file, file.name);
});
$("file").addEventListener("change", () => { const file = $("file").files[0]; if (file) upload(file, file.name); });

// ---- webcam recording --------------------------------------------------------------------------------

let recorder = null, chunks = [], recordStarted = 0, timer = null;

function recordingType() {
  const types = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm", "video/mp4"];
  return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
}

$("record").addEventListener("click", async () => {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    $("upload-status").textContent = "This browser cannot record video here (it needs a secure page and MediaRecorder).";
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (error) {
    $("upload-status").textContent = error.name === "NotAllowedError"
      ? "Camera permission was denied. Allow camera access for this site, then try again."
      : `The camera could not be started: ${error.message}`;
    return;
  }
  const type = recordingType();
  recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  chunks = [];
  recorder.ondataavailable = (event) => { if (event.data.size) chunks.push(event.data); };
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    clearInterval(timer);
    $("recorder").hidden = true;
    const blob = new Blob(chunks, { type: recorder.mimeType || "video/webm" });
    upload(blob, blob.type.includes("mp4") ? "recording.mp4" : "recording.webm");
  };
  $("preview").srcObject = stream;
  $("recorder").hidden = false;
  recorder.start(1000);
  recordStarted = Date.now();
  timer = setInterval(() => { $("record-time").textContent = `${Math.round((Date.now() - recordStarted) / 1000)} s`; }, 500);
});
$("stop-recording").addEventListener("click", () => { if (recorder && recorder.state === "recording") recorder.stop(); });

// ---- list --------------------------------------------------------------------------------------------

async function refresh() {
  const answer = await apiFetch("/api/v1/videos");
  const { videos } = await answer.json();
  $("videos").replaceChildren(...videos.map((video) => {
    const row = document.createElement("tr");
    const status = video.status === "running" || video.status === "queued"
      ? `${video.status} ${(video.progress * 100).toFixed(0)}%`
      : video.status + (video.error ? ` — ${video.error}` : "");
    const cells = [video.filename, new Date(video.created_at).toLocaleString(), `${video.duration_s.toFixed(1)} s`, status, video.people ?? "–"];
    cells.forEach((text, i) => {
      const cell = document.createElement("td");
      if (i === 0) { const link = document.createElement("a"); link.href = `/videos/${video.id}`; link.textContent = text; cell.append(link); } else cell.textContent = text;
      row.append(cell);
    });
    const actions = document.createElement("td");
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.onclick = async () => {
      if (!confirm(`Delete ${video.filename} and its results?`)) return;
      await apiFetch(`/api/v1/videos/${video.id}`, { method: "DELETE", headers: { "X-CSRFToken": CSRF_TOKEN } });
      refresh();
    };
    actions.append(remove);
    row.append(actions);
    return row;
  }));
  $("no-videos").hidden = videos.length > 0;
  if (videos.some((v) => v.status === "queued" || v.status === "running")) setTimeout(refresh, 2000);
}
refresh();
