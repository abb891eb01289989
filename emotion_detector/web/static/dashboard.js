// The edge dashboard: devices (online/offline, last seen), a live feed of their events and, per device, the
// mix of expressions over the last hour or day. Devices and events are pushed by the server
// (/api/v1/events/stream, server-sent events); the page never polls. A chart is fetched again when events of
// its device arrive, at most every few seconds.
"use strict";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];
const OTHER_COLOUR = "#d9d9de"; // a label outside the seven (a face that carried none)
const SVG = "http://www.w3.org/2000/svg";
const FEED_ROWS = 200; // older rows leave the page; the API keeps them
const CHART_REFRESH_MS = 5000; // a busy device redraws its chart at most this often
const TICK_MINUTES = { hour: 10, day: 180 };
const $ = (id) => document.getElementById(id);
const devices = new Map(); // device_id -> { data, card, parts, window, chartTimer, chartFetchedAt }

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text only: ids and labels come from devices, never markup
  return node;
}

function svg(tag, attributes, parent) {
  const node = document.createElementNS(SVG, tag);
  Object.entries(attributes).forEach(([k, v]) => node.setAttribute(k, v));
  if (parent) parent.append(node);
  return node;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

const clock = (ms, seconds) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}), hour12: false });

function legend() {
  const box = element("p", "legend");
  box.append(...EMOTIONS.map((emotion) => {
    const item = element("span"), swatch = element("i");
    swatch.style.background = COLOURS[emotion];
    item.append(swatch, emotion);
    return item;
  }));
  return box;
}

// ---- devices -----------------------------------------------------------------------------------------

function deviceCard(id) {
  const card = element("article", "device");
  card.dataset.deviceId = id;
  const head = element("header", "device-head");
  const name = element("strong", "device-name", id);
  const badge = element("span", "badge");
  const seen = element("span", "muted last-seen");
  const count = element("span", "muted event-count");
  const switcher = element("span", "window-switch");
  switcher.setAttribute("role", "group");
  switcher.setAttribute("aria-label", `chart window of ${id}`);
  const buttons = ["hour", "day"].map((span) => {
    const button = element("button", null, span === "hour" ? "Last hour" : "Last day");
    button.type = "button";
    button.dataset.window = span;
    button.setAttribute("aria-pressed", String(span === "hour"));
    button.onclick = () => {
      const device = devices.get(id);
      device.window = span;
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      loadChart(id);
    };
    return button;
  });
  switcher.append(...buttons);
  head.append(name, badge, seen, count, switcher);
  const chart = element("div", "device-chart");
  const key = legend();
  const unit = element("small", "muted chart-unit");
  key.append(unit);
  card.append(head, key, chart);
  return { card, parts: { badge, seen, count, chart, unit } };
}

function showDevice(data) {
  let device = devices.get(data.device_id);
  if (!device) {
    device = { data, window: "hour", chartTimer: null, chartFetchedAt: 0, ...deviceCard(data.device_id) };
    devices.set(data.device_id, device);
    const list = $("devices");
    const after = [...list.children].find((card) => card.dataset.deviceId > data.device_id);
    list.insertBefore(device.card, after || null); // by device id, as the API lists them
    $("no-devices").hidden = true;
    loadChart(data.device_id);
  }
  device.data = data;
  const online = data.state === "online";
  device.parts.badge.textContent = data.state;
  device.parts.badge.className = `badge ${online ? "online" : "offline"}`;
  device.parts.count.textContent = `${data.events} event${data.events === 1 ? "" : "s"}`;
  refreshSeen(device);
}

function refreshSeen(device) {
  device.parts.seen.textContent = `last seen ${ago(device.data.last_seen_ms)}`;
  device.parts.seen.title = new Date(device.data.last_seen_ms).toLocaleString();
}

// ---- charts ------------------------------------------------------------------------------------------

function chartSoon(id) {
  const device = devices.get(id);
  if (!device || device.chartTimer) return;
  const wait = Math.max(0, device.chartFetchedAt + CHART_REFRESH_MS - Date.now());
  device.chartTimer = setTimeout(() => { device.chartTimer = null; loadChart(id); }, wait);
}

async function loadChart(id) {
  const device = devices.get(id);
  device.chartFetchedAt = Date.now();
  const span = device.window;
  const answer = await apiFetch(`/api/v1/devices/${encodeURIComponent(id)}/mix?window=${span}`);
  if (!answer.ok) return;
  const mix = await answer.json();
  if (device.window !== span) return; // switched again meanwhile
  device.parts.chart.replaceChildren(mixChart(mix));
  device.parts.unit.textContent = `events per ${mix.bucket_ms === 60000 ? "minute" : `${mix.bucket_ms / 60000} min`}`;
}

function niceMax(n) {
  if (n <= 4) return n <= 2 ? 2 : 4; // a mid tick that is a whole count
  const step = 10 ** Math.floor(Math.log10(n));
  return [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * step).find((v) => v >= n);
}

function mixChart(mix) {
  const width = 640, height = 180, left = 40, right = 8, top = 8, bottom = 24;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const totals = mix.buckets.map((b) => Object.values(b.counts).reduce((a, n) => a + n, 0));
  const most = niceMax(Math.max(0, ...totals));
  const plot = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart mix", width: "100%", role: "img",
    "aria-label": `expressions of ${mix.device_id} over the last ${mix.window}, events per ${mix.bucket_ms / 60000} min`,
  });
  const x = (ms) => left + ((ms - mix.start_ms) / (mix.end_ms - mix.start_ms)) * plotWidth;
  const y = (n) => top + (1 - n / most) * plotHeight;
  [0, most / 2, most].filter(Number.isInteger).forEach((n) => { // counts: no "1.5" tick
    svg("line", { x1: left, x2: width - right, y1: y(n), y2: y(n), stroke: "#e3e6ec" }, plot);
    const label = svg("text", { x: left - 6, y: y(n) + 4, "text-anchor": "end", class: "tick y-tick" }, plot);
    label.textContent = n;
  });
  const barWidth = plotWidth / mix.buckets.length;
  mix.buckets.forEach((bucket, i) => {
    let stacked = 0;
    const labels = [...EMOTIONS, ...Object.keys(bucket.counts).filter((e) => !EMOTIONS.includes(e))];
    const group = svg("g", {}, plot);
    labels.forEach((emotion) => {
      const n = bucket.counts[emotion];
      if (!n) return;
      svg("rect", {
        x: (left + i * barWidth + 0.5).toFixed(1), y: y(stacked + n).toFixed(1), width: Math.max(1, barWidth - 1).toFixed(1),
        height: (y(stacked) - y(stacked + n)).toFixed(1), fill: COLOURS[emotion] || OTHER_COLOUR, "data-emotion": emotion,
      }, group);
      stacked += n;
    });
    if (stacked) {
      const summary = labels.filter((e) => bucket.counts[e]).map((e) => `${e} ${bucket.counts[e]}`).join(", ");
      svg("title", {}, group).textContent = `${clock(bucket.start_ms)}: ${summary}`;
    }
  });
  // The time axis: ticks on whole local tens of minutes (hour) or three hours (day), labelled HH:MM.
  svg("line", { x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight, stroke: "#b9c0cc" }, plot);
  const every = TICK_MINUTES[mix.window];
  for (let t = mix.start_ms; t < mix.end_ms; t += mix.bucket_ms) { // not the end: a day's ends share their HH:MM
    const local = new Date(t);
    if ((local.getHours() * 60 + local.getMinutes()) % every !== 0) continue;
    svg("line", { x1: x(t), x2: x(t), y1: top + plotHeight, y2: top + plotHeight + 4, stroke: "#b9c0cc" }, plot);
    const anchor = x(t) < left + 20 ? "start" : x(t) > width - right - 20 ? "end" : "middle";
    svg("text", { x: x(t), y: height - 6, "text-anchor": anchor, class: "tick x-tick" }, plot).textContent = clock(t);
  }
  if (!totals.some((n) => n)) {
    svg("text", { x: left + plotWidth / 2, y: top + plotHeight * 0.75 + 4, "text-anchor": "middle", class: "empty" }, plot).textContent =
      `no events in the last ${mix.window}`;
  }
  return plot;
}

// ---- live feed ---------------------------------------------------------------------------------------

function feedRow(event) {
  const row = element("li");
  row.dataset.eventId = event.event_id;
  const emotion = (event.face && event.face.emotion) || {};
  const label = emotion.label || "—";
  const swatch = element("i");
  swatch.style.background = emotion.uncertain ? UNCERTAIN_COLOUR : COLOURS[label] || OTHER_COLOUR;
  const what = element("span", "feed-emotion");
  // The words every page uses (common.js): "happy 81%", or "uncertain (maybe sad 38%)" below the threshold.
  what.append(swatch, typeof emotion.confidence === "number" ? expressionText(emotion) : label);
  const time = element("time", "muted", clock(event.timestamp_ms, true));
  time.dateTime = new Date(event.timestamp_ms).toISOString();
  const seen = element("span", "muted feed-seen", `${event.type === "track_end" ? "left, " : ""}${(event.seen_ms / 1000).toFixed(1)} s`);
  seen.title = event.type === "track_end" ? "the face left the view after this long" : "the face has been in view this long";
  const track = element("span", "muted", `#${event.track_id}`);
  track.title = "track id on the device";
  row.append(time, element("strong", null, event.device_id), track, what, seen);
  row.dataset.timestampMs = event.timestamp_ms;
  return row;
}

function showEvent(event) {
  const feed = $("feed");
  if ([...feed.children].some((row) => row.dataset.eventId === event.event_id)) return; // sent again after a reconnection
  // Newest on top by the device's clock: an event a device queued while offline goes where it happened.
  const later = [...feed.children].findLast((row) => Number(row.dataset.timestampMs) > event.timestamp_ms);
  feed.insertBefore(feedRow(event), later ? later.nextElementSibling : feed.firstElementChild);
  while (feed.children.length > FEED_ROWS) feed.lastElementChild.remove();
  $("no-events").hidden = true;
  chartSoon(event.device_id);
}

let lastEventId = null; // the feed's place, for a reconnection EventSource gives up on

function connect() {
  const query = lastEventId === null ? "" : `?last_event_id=${encodeURIComponent(lastEventId)}`;
  const source = new EventSource(`/api/v1/events/stream${query}`);
  const status = $("connection");
  source.onopen = () => { status.textContent = "live"; status.className = "pill ok"; };
  source.onerror = () => {
    status.textContent = "reconnecting…";
    status.className = "pill warn";
    // EventSource reconnects by itself when a stream ends (the server ends each after a few minutes), naming
    // the last event; after an error answer (a 503 while the database is down) it gives up: start anew.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
  source.addEventListener("device", (message) => showDevice(JSON.parse(message.data)));
  source.addEventListener("event", (message) => { lastEventId = message.lastEventId; showEvent(JSON.parse(message.data)); });
}

setInterval(() => devices.forEach(refreshSeen), 1000); // relative times only: no request
connect();
