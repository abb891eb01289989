// One video: progress while it is analysed, then the annotated video, a chart of each person's expressions
// over time (click to seek), statistics and downloads.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const COLOURS = { angry: "#e5484d", disgust: "#8e4ec6", fear: "#f76b15", happy: "#30a46c", sad: "#0090ff", surprise: "#ffc53d", neutral: "#8b8d98", uncertain: "#d9d9de" };
// Frames whose top expression is below the model's calibrated threshold are counted as "uncertain", not named.
const SHOWN = [...EMOTIONS, "uncertain"];
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const id = $("job").dataset.id;
const api = `/api/v1/videos/${id}`;
const cursors = [];
// State-changing requests carry the page's CSRF token (checked when a signed-in session authenticates them).
const CSRF = { "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content };

function svg(tag, attributes, parent) {
  const element = document.createElementNS(SVG, tag);
  Object.entries(attributes).forEach(([k, v]) => element.setAttribute(k, v));
  if (parent) parent.append(element);
  return element;
}

async function poll() {
  const status = await (await fetch(api)).json();
  $("status").textContent = status.status;
  $("progress").value = status.progress;
  $("percent").textContent = `${(status.progress * 100).toFixed(0)}%`;
  $("error").hidden = !status.error;
  $("error").textContent = status.error || "";
  $("cancel").hidden = !(status.status === "queued" || status.status === "running");
  $("retry").hidden = !(status.status === "failed" || status.status === "cancelled");
  if (status.status === "done") showResults();
  else if (status.status === "queued" || status.status === "running") setTimeout(poll, 1000);
}

$("cancel").onclick = async () => { await fetch(`${api}/cancel`, { method: "POST", headers: CSRF }); poll(); };
$("retry").onclick = async () => { await fetch(`${api}/retry`, { method: "POST", headers: CSRF }); poll(); };

async function showResults() {
  const results = await (await fetch(`${api}/results`)).json();
  $("results").hidden = false;
  const player = $("annotated");
  player.src = `${api}/annotated`;
  $("download-json").href = `${api}/results`;
  $("download-csv").href = `${api}/results.csv`;
  $("download-video").href = `${api}/annotated?download=1`;
  const v = results.video;
  $("summary").textContent = `${v.duration_s.toFixed(1)} s, ${v.frames_analysed} of ${v.frames} frames analysed, ` +
    `processed in ${v.processing_s.toFixed(1)} s (${v.speed_x_realtime.toFixed(1)}× real time) with ${v.detector}; ` +
    `${results.people.filter((p) => p.main).length} main ${results.people.filter((p) => p.main).length === 1 ? "person" : "people"}` +
    (results.people.length ? "" : " — no faces found");
  const shown = results.people.filter((p) => p.main).length ? results.people.filter((p) => p.main) : results.people;
  $("charts").replaceChildren(...shown.map((person) => chart(person, v.duration_s, player)));
  $("people").replaceChildren(...results.people.map(personRow));
  $("mix").replaceChildren(mixChart(results.group_mix, v.duration_s, player));
  player.addEventListener("timeupdate", () => cursors.forEach((move) => move(player.currentTime)));
}

function chart(person, duration, player) {
  const width = 900, height = 170, left = 34, bottom = 18;
  const box = document.createElement("div");
  const title = document.createElement("p");
  const name = document.createElement("strong");
  name.textContent = `#${person.id}`;
  // Text nodes only: the labels come from the model server, never parsed as markup.
  title.append(name, ` — mostly ${person.most_common_expression}, seen ${person.first_seen_s.toFixed(1)}–${person.last_seen_s.toFixed(1)} s`);
  const legend = document.createElement("p");
  legend.className = "legend";
  legend.append(...EMOTIONS.map((e) => {
    const item = document.createElement("span"), swatch = document.createElement("i");
    swatch.style.background = COLOURS[e];
    item.append(swatch, e);
    return item;
  }));
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", width: "100%", role: "img", "aria-label": `expressions of person ${person.id} over time` });
  const x = (t) => left + (t / Math.max(duration, 1e-6)) * (width - left - 4);
  const y = (p) => 4 + (1 - p) * (height - bottom - 8);
  [0, 0.5, 1].forEach((p) => {
    svg("line", { x1: left, x2: width, y1: y(p), y2: y(p), stroke: "#e3e6ec" }, plot);
    svg("text", { x: 2, y: y(p) + 4, "font-size": 11, fill: "#5b6577" }, plot).textContent = p.toFixed(1);
  });
  EMOTIONS.forEach((emotion) => {
    const points = person.timeline.map((f) => `${x(f.time_s).toFixed(1)},${y(f.emotion.probabilities[emotion]).toFixed(1)}`).join(" ");
    svg("polyline", { points, fill: "none", stroke: COLOURS[emotion], "stroke-width": 1.6, "data-emotion": emotion }, plot);
  });
  const cursor = svg("line", { x1: left, x2: left, y1: 0, y2: height - bottom, stroke: "#1d2330", "stroke-width": 1 }, plot);
  cursors.push((t) => { cursor.setAttribute("x1", x(t)); cursor.setAttribute("x2", x(t)); });
  plot.addEventListener("click", (event) => {
    const rect = plot.getBoundingClientRect();
    const px = ((event.clientX - rect.left) / rect.width) * width;
    player.currentTime = Math.max(0, Math.min(duration, ((px - left) / (width - left - 4)) * duration));
  });
  box.append(title, legend, plot);
  return box;
}

function personRow(person) {
  const row = document.createElement("tr");
  const counts = SHOWN.filter((e) => person.expression_counts[e]).map((e) => `${e} ${person.expression_counts[e]}`).join(", ");
  [
    `#${person.id}${person.main ? "" : " (brief)"}`,
    `${person.first_seen_s.toFixed(1)}–${person.last_seen_s.toFixed(1)} s`,
    person.frames_seen,
    person.most_common_expression === "uncertain" ? "uncertain (no expression clear enough)"
      : `${person.most_common_expression} (${(person.mean_probability[person.most_common_expression] * 100).toFixed(0)}% avg)`,
    counts,
    `~${person.age.mean_years.toFixed(0)} y`,
    `${person.gender.label} (${(person.gender.confidence * 100).toFixed(0)}%)`,
  ].forEach((text) => { const cell = document.createElement("td"); cell.textContent = text; row.append(cell); });
  return row;
}

function mixChart(mix, duration, player) {
  const width = 900, height = 70;
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", width: "100%", role: "img", "aria-label": "group expression mix per second" });
  const step = width / Math.max(1, mix.length);
  mix.forEach((bin, i) => {
    let top = 0;
    SHOWN.forEach((emotion) => {
      const share = bin.share[emotion];
      if (!share) return;
      svg("rect", { x: i * step, y: top * height, width: Math.max(1, step - 1), height: share * height, fill: COLOURS[emotion] }, plot);
      top += share;
    });
  });
  plot.addEventListener("click", (event) => {
    const rect = plot.getBoundingClientRect();
    player.currentTime = ((event.clientX - rect.left) / rect.width) * duration;
  });
  return plot;
}

poll();
