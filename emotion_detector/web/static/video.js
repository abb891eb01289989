// One video: progress while it is analysed, then the annotated video and charts a reader understands (charts.js):
// per person, the expressions over time (smoothed, the raw values one click away), the share of time per
// expression, the dominant expression per segment and valence/arousal; for the group, the expression mix and
// the number of people on screen over time. Every time chart has a time axis in seconds, marks the shot cuts,
// follows the video with a cursor, shows values under the pointer and seeks the video on a click.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const CHART_COLOURS = { ...COLOURS, uncertain: "#c4c6cf" };  // on charts, uncertain a shade darker than on boxes
// Frames whose top expression is below the model's calibrated threshold are counted as "uncertain", not named.
const SHOWN = [...EMOTIONS, "uncertain"];
const $ = (id) => document.getElementById(id);
const id = $("job").dataset.id;
const api = `/api/v1/videos/${id}`;
const timeCharts = []; // charts on the time axis: they follow the video
const allCharts = [];
const { html, percent } = Charts;

async function poll() {
  const status = await (await apiFetch(api)).json();
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

$("cancel").onclick = async () => { await apiFetch(`${api}/cancel`, { method: "POST", headers: { "X-CSRFToken": CSRF_TOKEN } }); poll(); };
$("retry").onclick = async () => { await apiFetch(`${api}/retry`, { method: "POST", headers: { "X-CSRFToken": CSRF_TOKEN } }); poll(); };

// Who counts as a person: the backend's rule where the results state it (people[].counted), else the older
// "main" flag. The others are brief detections, listed apart and never counted.
const isCounted = (person) => (person.counted === undefined ? person.main : person.counted);
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// Share of a person's analysed frames per expression (uncertain frames included): "happy 41 % of the time".
function timeShare(person) {
  const total = SHOWN.reduce((sum, e) => sum + (person.expression_counts[e] || 0), 0) || person.frames_seen || 1;
  return Object.fromEntries(SHOWN.map((e) => [e, (person.expression_counts[e] || 0) / total]));
}

// The expressions by share of the time, most frequent first (uncertain frames included, as they are counted).
function byShare(person) {
  const share = timeShare(person);
  return SHOWN.filter((e) => share[e] > 0).sort((a, b) => share[b] - share[a]).map((e) => ({ expression: e, share: share[e] }));
}

// "happy 41 % of the time"; where the most frequent is uncertain, also the expression most often clear.
function mostOften(person) {
  const [top, ...rest] = byShare(person);
  if (!top) return "no frames";
  const text = `${top.expression} ${percent(top.share)} of the time`;
  if (top.expression !== "uncertain") return text;
  const named = rest.find((r) => r.expression !== "uncertain");
  return `${text} (no expression clear enough)` + (named ? `, then ${named.expression} ${percent(named.share)}` : "");
}

async function showResults() {
  const results = await (await apiFetch(`${api}/results`)).json();
  $("results").hidden = false;
  const player = $("annotated");
  player.src = `${api}/annotated`;
  $("download-json").href = `${api}/results`;
  $("download-csv").href = `${api}/results.csv`;
  $("download-video").href = `${api}/annotated?download=1`;
  $("report-html").href = `${api}/report.html`;
  $("report-pdf").href = `${api}/report.pdf`;
  const v = results.video;
  const counted = results.people.filter(isCounted), brief = results.people.filter((p) => !isCounted(p));
  const people = v.people_counted === undefined ? counted.length : v.people_counted;
  const briefCount = v.brief_detections === undefined ? brief.length : v.brief_detections;
  $("summary").textContent = `${v.duration_s.toFixed(1)} s, ${v.frames_analysed} of ${v.frames} frames analysed, ` +
    `processed in ${v.processing_s.toFixed(1)} s (${v.speed_x_realtime.toFixed(1)}× real time) with ${v.detector}` +
    (v.min_face_px ? `, faces from ${Math.round(v.min_face_px)} px high.` : ".");
  $("people-count").textContent = (results.people.length ? `${plural(people, "person", "people")}` : "No faces found") +
    (briefCount ? `, and ${plural(briefCount, "brief detection", "brief detections")} listed apart (not counted)` : "") +
    (v.shot_cuts_s && v.shot_cuts_s.length ? `; ${plural(v.shot_cuts_s.length, "shot cut", "shot cuts")} (dashed lines on the charts)` : "") + ".";
  const rule = v.person_rule;
  $("person-rule").hidden = !rule;
  if (rule) {
    $("person-rule").textContent = `A person: seen for at least ${rule.min_seen_s} s with a mean detection score of at least ` +
      `${rule.min_mean_score}. Shorter or weaker face tracks are brief detections.`;
  }
  $("people").replaceChildren(...counted.map(personRow));
  $("people-table").hidden = !counted.length;
  $("brief-section").hidden = !brief.length;
  $("brief").replaceChildren(...brief.map(personRow));

  const context = {
    duration: v.duration_s, cuts: v.shot_cuts_s || [],
    step: (v.every_n_frames || 1) / (v.fps || 25), seek: (t) => { player.currentTime = t; },
  };
  const shown = counted.length ? counted : results.people;
  $("charts").replaceChildren(...shown.map((person) => personCharts(person, context)));
  if (!shown.length) {
    $("charts").replaceChildren(html("p", "muted no-faces", v.min_face_px
      ? `No faces found in this video. Faces smaller than ${Math.round(v.min_face_px)} px high are not looked for: ` +
        "try a video with more pixels, or filmed closer to the faces."
      : "No faces found in this video."));
  }
  const group = [mixChart(results.group_mix, context), onScreenChart(results, counted, context)];
  timeCharts.push(...group);
  allCharts.push(...group);
  $("group").replaceChildren(...group.map((chart) => chart.element));
  allCharts.forEach((chart) => chart.redraw());
  const follow = () => timeCharts.forEach((chart) => chart.moveCursor(player.currentTime));
  ["timeupdate", "seeked", "loadedmetadata"].forEach((event) => player.addEventListener(event, follow));
  // While the video plays, the cursors move every frame ("timeupdate" alone comes a few times a second).
  const animate = () => { follow(); if (!player.paused && !player.ended) requestAnimationFrame(animate); };
  player.addEventListener("play", () => requestAnimationFrame(animate));
  follow();
}

function personRow(person) {
  const row = document.createElement("tr");
  [
    `#${person.id}`,
    `${person.first_seen_s.toFixed(1)}–${person.last_seen_s.toFixed(1)} s (${person.frames_seen} frames)`,
    byShare(person).map((r) => `${r.expression} ${percent(r.share)}`).join(", "),
    `~${person.age.mean_years.toFixed(0)} y`,
    `${person.gender.label} (${(person.gender.confidence * 100).toFixed(0)}%)`,
  ].forEach((text) => row.append(html("td", "", String(text))));
  return row;
}

// Consecutive timeline entries further apart than a few analysed frames are not joined by a line.
function runs(timeline, step) {
  const out = [];
  timeline.forEach((entry, i) => {
    if (!i || entry.time_s - timeline[i - 1].time_s > step * 3 + 1e-6) out.push([]);
    out[out.length - 1].push(entry);
  });
  return out;
}

function pathOf(points, x, y) {
  return points.map(([t, value], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(value).toFixed(1)}`).join("");
}

// The timeline entry nearest to t, if the person is on screen there.
function entryAt(timeline, t, step) {
  let best = null;
  timeline.forEach((entry) => { if (!best || Math.abs(entry.time_s - t) < Math.abs(best.time_s - t)) best = entry; });
  return best && Math.abs(best.time_s - t) <= Math.max(step * 1.5, 0.1) ? best : null;
}

const PERCENT_AXIS = { min: 0, max: 1, ticks: [0, 0.25, 0.5, 0.75, 1].map((value) => ({ value, label: `${value * 100} %` })) };

function personCharts(person, context) {
  const box = html("section", "person-charts");
  box.dataset.person = person.id;
  const brief = isCounted(person) ? "" : " (a brief detection, not counted as a person)";
  box.append(html("h3", "", `#${person.id}${brief}: ${mostOften(person)}; seen ${person.first_seen_s.toFixed(1)}–${person.last_seen_s.toFixed(1)} s`));
  const timeline = person.timeline;
  const hasRaw = timeline.length > 0 && timeline.every((f) => f.raw_probabilities);
  let mode = "smoothed";
  const probabilities = (entry) => (mode === "raw" ? entry.raw_probabilities : entry.emotion.probabilities);

  // Expressions over time, smoothed by default; the raw values are one click away.
  const toggle = html("span", "toggle");
  toggle.setAttribute("role", "group");
  toggle.setAttribute("aria-label", "values shown");
  const buttons = ["smoothed", "raw"].map((name) => {
    const button = html("button", `show-${name}`, name);
    button.type = "button";
    button.setAttribute("aria-pressed", String(name === mode));
    button.onclick = () => {
      mode = name;
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      expressions.redraw();
    };
    return button;
  });
  toggle.append(...buttons);
  toggle.hidden = !hasRaw;
  const expressions = Charts.timeChart({
    className: "expressions", filename: `video-${id}-person-${person.id}-expressions`, controls: [toggle],
    ariaLabel: `expressions of person ${person.id} over time`,
    title: () => `Person #${person.id}: expressions over time (${mode === "raw" ? "raw values per frame" : "smoothed"})`,
    legend: () => EMOTIONS.map((e) => ({ label: e, colour: CHART_COLOURS[e], line: true })),
    duration: context.duration, cuts: context.cuts, plotHeight: 150, y: PERCENT_AXIS, onSeek: context.seek,
    plot({ g, x, y, el }) {
      EMOTIONS.forEach((emotion) => {
        const d = runs(timeline, context.step).map((run) => pathOf(run.map((f) => [f.time_s, probabilities(f)[emotion]]), x, y)).join("");
        el("path", { d, fill: "none", stroke: CHART_COLOURS[emotion], "stroke-width": 1.8, "stroke-linejoin": "round", "data-emotion": emotion }, g);
      });
    },
    hover(t) {
      const entry = entryAt(timeline, t, context.step);
      if (!entry) return { heading: `${t.toFixed(1)} s: not on screen`, rows: [] };
      const p = probabilities(entry);
      return {
        heading: `${entry.time_s.toFixed(2)} s (${mode})`,
        rows: [...EMOTIONS].sort((a, b) => p[b] - p[a]).map((e) => ({ colour: CHART_COLOURS[e], label: e, value: percent(p[e]) })),
      };
    },
  });

  // Share of the time per expression.
  const share = timeShare(person);
  const rows = SHOWN.map((e) => ({ label: e, colour: CHART_COLOURS[e], value: share[e], text: `${percent(share[e])} of the time` }));
  const bars = Charts.barChart({
    className: "time-share", filename: `video-${id}-person-${person.id}-time-share`, rows,
    title: `Person #${person.id}: share of the time per expression (${person.frames_seen} frames)`,
    ariaLabel: `share of the time per expression, person ${person.id}`,
  });

  // The dominant expression (most frequent label, uncertain included) in each segment of equal length.
  const span = Math.max(person.last_seen_s - person.first_seen_s, context.step);
  const length = Charts.niceStep(span, 10);
  const segments = [];
  timeline.forEach((entry) => {
    const index = Math.floor((entry.time_s - person.first_seen_s) / length + 1e-9);
    const segment = segments[index] || (segments[index] = { start: person.first_seen_s + index * length, counts: {}, frames: 0 });
    const name = entry.emotion.uncertain ? "uncertain" : entry.emotion.label;
    segment.counts[name] = (segment.counts[name] || 0) + 1;
    segment.frames += 1;
  });
  segments.forEach((s) => {
    if (!s) return;
    s.end = Math.min(s.start + length, Math.max(person.last_seen_s, s.start + context.step));
    s.top = SHOWN.reduce((best, e) => ((s.counts[e] || 0) > (s.counts[best] || 0) ? e : best), SHOWN[0]);
  });
  const present = segments.filter(Boolean);
  const used = SHOWN.filter((e) => present.some((s) => s.top === e));
  const dominant = Charts.timeChart({
    className: "segments", filename: `video-${id}-person-${person.id}-dominant`,
    ariaLabel: `dominant expression per segment, person ${person.id}`,
    title: () => `Person #${person.id}: dominant expression per ${Charts.seconds(length, length)} segment`,
    legend: () => used.map((e) => ({ label: e, colour: CHART_COLOURS[e] })),
    duration: context.duration, cuts: context.cuts, plotHeight: 34, y: { min: 0, max: 1, ticks: [] }, onSeek: context.seek,
    plot({ g, x, y, el }) {
      present.forEach((s) => {
        const x0 = x(s.start), w = Math.max(1, x(s.end) - x0 - 1);
        const block = el("rect", { x: x0, y: y(1), width: w, height: y(0) - y(1), fill: CHART_COLOURS[s.top], class: "segment", "data-expression": s.top }, g);
        el("title", {}, block).textContent = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.top}`;
        if (w > s.top.length * 7 + 6) {
          const text = el("text", { x: x0 + w / 2, y: y(0.5) + 4, "text-anchor": "middle", "font-size": 12, fill: "#111" }, g);
          text.textContent = s.top;
        }
      });
    },
    hover(t) {
      const s = present.find((segment) => t >= segment.start && t < segment.end + 1e-6);
      if (!s) return { heading: `${t.toFixed(1)} s: not on screen`, rows: [] };
      return {
        heading: `${s.start.toFixed(1)}–${s.end.toFixed(1)} s (${s.frames} frames)`,
        rows: SHOWN.filter((e) => s.counts[e]).sort((a, b) => s.counts[b] - s.counts[a])
          .map((e) => ({ colour: CHART_COLOURS[e], label: e, value: percent(s.counts[e] / s.frames) })),
      };
    },
  });
  const figures = [expressions, bars, dominant];
  timeCharts.push(expressions, dominant);

  // Valence and arousal, where the results carry them: derived from the expressions, not measured.
  if (timeline.length && timeline.every((f) => typeof f.valence === "number" && typeof f.arousal === "number")) {
    const lines = [{ key: "valence", colour: "#2f7cf6" }, { key: "arousal", colour: "#d6409f" }];
    const affect = Charts.timeChart({
      className: "affect", filename: `video-${id}-person-${person.id}-valence-arousal`,
      ariaLabel: `valence and arousal of person ${person.id} over time, derived from expressions`,
      title: () => `Person #${person.id}: valence and arousal (derived from expressions)`,
      legend: () => lines.map((l) => ({ label: l.key, colour: l.colour, line: true })),
      duration: context.duration, cuts: context.cuts, plotHeight: 110, onSeek: context.seek,
      y: { min: -1, max: 1, ticks: [-1, -0.5, 0, 0.5, 1].map((value) => ({ value, label: value.toFixed(1) })) },
      plot({ g, x, y, el }) {
        lines.forEach((l) => {
          const d = runs(timeline, context.step).map((run) => pathOf(run.map((f) => [f.time_s, f[l.key]]), x, y)).join("");
          el("path", { d, fill: "none", stroke: l.colour, "stroke-width": 1.8, "data-series": l.key }, g);
        });
      },
      hover(t) {
        const entry = entryAt(timeline, t, context.step);
        if (!entry) return { heading: `${t.toFixed(1)} s: not on screen`, rows: [] };
        return { heading: `${entry.time_s.toFixed(2)} s`, rows: lines.map((l) => ({ colour: l.colour, label: l.key, value: entry[l.key].toFixed(2) })) };
      },
    });
    figures.push(affect);
    timeCharts.push(affect);
  }
  box.append(...figures.map((f) => f.element));
  allCharts.push(...figures);
  return box;
}

// The share of faces per expression in each bin of the group mix, stacked (uncertain included).
function mixChart(mix, context) {
  const bins = mix.map((bin, i) => ({ ...bin, end_s: i + 1 < mix.length ? mix[i + 1].start_s : Math.min(context.duration, bin.start_s + 1) }));
  const used = SHOWN.filter((e) => bins.some((b) => b.share[e]));
  return Charts.timeChart({
    className: "mix", filename: `video-${id}-group-mix`, ariaLabel: "the group's expression mix over time",
    title: () => "Group: expression mix over time (share of the faces on screen)",
    legend: () => used.map((e) => ({ label: e, colour: CHART_COLOURS[e] })),
    duration: context.duration, cuts: context.cuts, plotHeight: 130, y: PERCENT_AXIS, onSeek: context.seek,
    empty: used.length ? "" : "no faces in this video",
    plot({ g, x, y, el }) {
      bins.forEach((bin) => {
        let bottom = 0;
        const x0 = x(bin.start_s), w = Math.max(1, x(bin.end_s) - x0 - 0.5);
        SHOWN.forEach((emotion) => {
          const share = bin.share[emotion];
          if (!share) return;
          el("rect", { x: x0, y: y(bottom + share), width: w, height: y(bottom) - y(bottom + share), fill: CHART_COLOURS[emotion], "data-expression": emotion }, g);
          bottom += share;
        });
      });
    },
    hover(t) {
      const bin = bins.find((b) => t >= b.start_s && t < b.end_s) || bins[bins.length - 1];
      if (!bin) return null;
      return {
        heading: `${bin.start_s.toFixed(1)}–${bin.end_s.toFixed(1)} s (${plural(bin.faces, "face", "faces")})`,
        rows: SHOWN.filter((e) => bin.share[e]).sort((a, b) => bin.share[b] - bin.share[a])
          .map((e) => ({ colour: CHART_COLOURS[e], label: e, value: percent(bin.share[e]) })),
      };
    },
  });
}

// How many counted people have a timeline entry at each analysed frame.
function onScreenChart(results, counted, context) {
  const v = results.video, every = v.every_n_frames || 1, fps = v.fps || 25;
  const frames = new Map();
  for (let frame = 0; frame < (v.frames || 0); frame += every) frames.set(frame, 0);
  results.people.forEach((p) => p.timeline.forEach((f) => { if (!frames.has(f.frame)) frames.set(f.frame, 0); }));
  counted.forEach((p) => p.timeline.forEach((f) => frames.set(f.frame, frames.get(f.frame) + 1)));
  const points = [...frames.entries()].sort((a, b) => a[0] - b[0]).map(([frame, n]) => [frame / fps, n]);
  const most = Math.max(1, ...points.map((p) => p[1]));
  const tickStep = Math.max(1, Math.ceil(most / 4));
  const ticks = [];
  for (let n = 0; n <= most; n += tickStep) ticks.push({ value: n, label: String(n) });
  return Charts.timeChart({
    className: "on-screen", filename: `video-${id}-people-on-screen`, ariaLabel: "number of people on screen over time",
    title: () => "Group: people on screen over time (brief detections not counted)",
    legend: () => [{ label: "people on screen", colour: "#2f7cf6", line: true }],
    duration: context.duration, cuts: context.cuts, plotHeight: 80, y: { min: 0, max: most, ticks }, onSeek: context.seek,
    plot({ g, x, y, el }) {
      const d = points.map(([t, n], i) => (i ? `H${x(t).toFixed(1)}V${y(n).toFixed(1)}` : `M${x(t).toFixed(1)},${y(n).toFixed(1)}`)).join("") +
        (points.length ? `H${x(context.duration).toFixed(1)}` : "");
      el("path", { d, fill: "none", stroke: "#2f7cf6", "stroke-width": 2, "data-series": "people" }, g);
    },
    hover(t) {
      let last = null;
      points.forEach((p) => { if (p[0] <= t + 1e-9) last = p; });
      if (!last) return null;
      return { heading: `${t.toFixed(1)} s`, rows: [{ colour: "#2f7cf6", label: "people on screen", value: String(last[1]) }] };
    },
  });
}

poll();
