// Plain SVG charts for the video results page (no library, nothing fetched from elsewhere: the page works
// offline). Each chart is drawn at the width it is shown at (one SVG unit = one CSS pixel, so its text stays
// legible on a 390 px phone as on a desktop) and drawn again when that width changes. A chart carries its own
// title and legend, so its PNG and SVG exports read on their own. Text comes in through textContent only.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const INK = "#1d2330", MUTED = "#5b6577", GRID = "#e3e6ec", CUT = "#3d4452";
  const PAD = { left: 46, right: 14 };
  const TITLE_H = 22, LEGEND_ROW = 18, AXIS_H = 26;

  function el(tag, attributes, parent) {
    const element = document.createElementNS(NS, tag);
    Object.entries(attributes || {}).forEach(([k, v]) => element.setAttribute(k, v));
    if (parent) parent.append(element);
    return element;
  }

  function label(parent, x, y, content, attributes) {
    const t = el("text", { x, y, "font-size": 12, fill: MUTED, ...attributes }, parent);
    t.textContent = content;
    return t;
  }

  // A chart's title, wrapped into lines that fit `width` (about 8.2 px a character at 14 px, bold); returns
  // the height it used.
  function title(parent, x, y, content, width) {
    const lines = [];
    content.split(" ").forEach((word) => {
      const last = lines[lines.length - 1];
      if (last !== undefined && (last + " " + word).length * 8.2 <= width) lines[lines.length - 1] = `${last} ${word}`;
      else lines.push(word);
    });
    const t = label(parent, x, y, "", { "font-size": 14, "font-weight": 600, fill: INK, class: "chart-title" });
    lines.forEach((line, i) => {
      const span = el("tspan", { x, dy: i ? 18 : 0 }, t);
      span.textContent = line;
    });
    return (lines.length - 1) * 18;
  }

  function html(tag, className, content) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (content !== undefined) element.textContent = content;
    return element;
  }

  // A round step so that [0, span] gets at most maxTicks ticks.
  function niceStep(span, maxTicks) {
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    return steps.find((s) => span / s <= Math.max(1, maxTicks)) || Math.ceil(span / Math.max(1, maxTicks));
  }

  // "0 s", "2.5 s": as many decimals as the step needs, no trailing zeros.
  function seconds(t, step) {
    const decimals = step === undefined || step >= 1 ? 0 : step >= 0.5 ? 1 : 2;
    return `${Number(t.toFixed(decimals))} s`;
  }

  const percent = (share) => `${Math.round(share * 100)} %`;

  // Legend items ({label, colour, dashed?}) laid out in rows across `width`; returns the height used.
  function legend(svg, items, x0, y0, width) {
    let x = x0, y = y0;
    items.forEach((item) => {
      const w = 30 + item.label.length * 7.4;
      if (x > x0 && x + w > x0 + width) { x = x0; y += LEGEND_ROW; }
      const g = el("g", { class: "legend-item", "data-label": item.label }, svg);
      if (item.dashed) el("line", { x1: x, x2: x + 14, y1: y - 4, y2: y - 4, stroke: item.colour, "stroke-width": 1.5, "stroke-dasharray": "4 3" }, g);
      else if (item.line) el("line", { x1: x, x2: x + 14, y1: y - 4, y2: y - 4, stroke: item.colour, "stroke-width": 2.5 }, g);
      else el("rect", { x, y: y - 10, width: 12, height: 12, rx: 2, fill: item.colour }, g);
      label(g, x + 18, y, item.label, { fill: INK });
      x += w;
    });
    return items.length ? y - y0 + LEGEND_ROW : 0;
  }

  // The SVG as a stand-alone file: what is only there while a person points at it (cursor, hover) is left out.
  function standalone(svg) {
    const copy = svg.cloneNode(true);
    copy.querySelectorAll(".transient").forEach((node) => node.remove());
    copy.setAttribute("xmlns", NS);
    copy.setAttribute("width", svg.getAttribute("width"));
    copy.setAttribute("height", svg.getAttribute("height"));
    copy.removeAttribute("class");
    return new XMLSerializer().serializeToString(copy);
  }

  let lastExport = null;
  function download(blob, filename) {
    if (lastExport) URL.revokeObjectURL(lastExport);
    lastExport = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = lastExport;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
  }

  function exportSvg(svg, filename) {
    download(new Blob([standalone(svg)], { type: "image/svg+xml" }), `${filename}.svg`);
  }

  function exportPng(svg, filename) {
    const width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height")), scale = 2;
    const source = URL.createObjectURL(new Blob([standalone(svg)], { type: "image/svg+xml" }));
    const image = new Image();
    image.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = width * scale;
      canvas.height = height * scale;
      const context = canvas.getContext("2d");
      context.fillStyle = "#fff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      URL.revokeObjectURL(source);
      canvas.toBlob((blob) => download(blob, `${filename}.png`), "image/png");
    };
    image.src = source;
  }

  // A chart in its frame: a toolbar (the chart's own controls, then PNG/SVG export) over an SVG drawn by
  // `draw(svg, width)`, which returns the height it used. `redraw()` draws it again (state changed).
  function figure({ filename, draw, controls, ariaLabel, className }) {
    const box = html("figure", "chart-figure");
    const toolbar = html("div", "chart-toolbar");
    const own = html("span", "chart-controls");
    (controls || []).forEach((control) => own.append(control));
    const exports = html("span", "chart-exports");
    const png = html("button", "export-png", "PNG"), svgButton = html("button", "export-svg", "SVG");
    [png, svgButton].forEach((b) => { b.type = "button"; });
    png.title = "Download this chart as a PNG image";
    svgButton.title = "Download this chart as an SVG drawing";
    exports.append("Export: ", png, " ", svgButton);
    toolbar.append(own, exports);
    const svg = el("svg", { class: `chart ${className || ""}`.trim(), role: "img", "aria-label": ariaLabel, "font-family": FONT });
    box.append(toolbar, svg);
    let width = 0;
    function redraw() {
      const shown = Math.floor(box.clientWidth || 0);
      width = Math.max(300, shown || 900);
      svg.replaceChildren();
      box.querySelectorAll(".chart-tooltip").forEach((tip) => { tip.hidden = true; });
      el("rect", { x: 0, y: 0, width, height: "100%", fill: "#fff" }, svg);
      const height = Math.ceil(draw(svg, width));
      svg.firstChild.setAttribute("height", height);
      svg.setAttribute("width", width);
      svg.setAttribute("height", height);
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    }
    png.onclick = () => exportPng(svg, filename);
    svgButton.onclick = () => exportSvg(svg, filename);
    if (window.ResizeObserver) {
      new ResizeObserver(() => { if (Math.floor(box.clientWidth) !== width && box.clientWidth > 0) redraw(); }).observe(box);
    }
    return { element: box, svg, redraw };
  }

  // A chart over the video's time axis (seconds, with ticks), with shot cuts marked, a cursor that follows
  // the video, values where the pointer is, and click to seek.
  //   title, legend: [{label, colour}], duration, cuts: [s], plotHeight, y: {min, max, ticks: [{value, label}]},
  //   plot(api) draws the data (api: {g, x, y, el}), hover(t) → {heading, rows: [{colour, label, value}]} | null,
  //   onSeek(t), filename, controls, ariaLabel, className
  function timeChart(options) {
    const state = { cursor: null };
    let tooltip = null;
    const chart = figure({
      filename: options.filename, controls: options.controls, ariaLabel: options.ariaLabel, className: options.className,
      draw(svg, width) {
        const plotW = width - PAD.left - PAD.right;
        const titleX = width < 500 ? 8 : PAD.left;
        const below = TITLE_H + 14 + title(svg, titleX, 16, options.title(), width - titleX - PAD.right);
        const items = [...options.legend()];
        if ((options.cuts || []).length) items.push({ label: "shot cut", colour: CUT, dashed: true });
        const top = below + legend(svg, items, titleX, below, width - titleX - PAD.right) + 4;
        const h = options.plotHeight;
        const duration = Math.max(options.duration, 1e-6);
        const x = (t) => PAD.left + (Math.max(0, Math.min(duration, t)) / duration) * plotW;
        const { min, max, ticks } = options.y;
        const y = (v) => top + (1 - (v - min) / (max - min)) * h;
        ticks.forEach((tick) => {
          el("line", { x1: PAD.left, x2: PAD.left + plotW, y1: y(tick.value), y2: y(tick.value), stroke: GRID }, svg);
          label(svg, PAD.left - 6, y(tick.value) + 4, tick.label, { "text-anchor": "end", class: "y-tick" });
        });
        // The time axis: a tick every round number of seconds, about one per 70 px.
        const step = niceStep(duration, Math.floor(plotW / 70));
        const axis = el("g", { class: "time-axis" }, svg);
        el("line", { x1: PAD.left, x2: PAD.left + plotW, y1: top + h, y2: top + h, stroke: MUTED }, axis);
        for (let t = 0; t <= duration + 1e-9; t += step) {
          const tx = x(t);
          el("line", { x1: tx, x2: tx, y1: top + h, y2: top + h + 5, stroke: MUTED }, axis);
          const anchor = tx > PAD.left + plotW - 20 ? "end" : "middle";
          label(axis, tx, top + h + 18, seconds(t, step), { "text-anchor": anchor, class: "time-tick" });
        }
        const g = el("g", { class: "data" }, svg);
        options.plot({ g, x, y, el, top, height: h, duration });
        if (options.empty) label(svg, PAD.left + plotW / 2, top + h / 2 + 4, options.empty, { "text-anchor": "middle", "font-size": 13, class: "empty" });
        (options.cuts || []).forEach((cut) => {
          const line = el("line", { x1: x(cut), x2: x(cut), y1: top, y2: top + h, stroke: CUT, "stroke-width": 1.2, "stroke-dasharray": "4 3", class: "shot-cut" }, svg);
          el("title", {}, line).textContent = `shot cut at ${cut.toFixed(1)} s`;
        });
        const cursor = el("line", { x1: -10, x2: -10, y1: top - 2, y2: top + h + 2, stroke: "#e5484d", "stroke-width": 1.5, class: "transient cursor" }, svg);
        const guide = el("line", { x1: -10, x2: -10, y1: top, y2: top + h, stroke: INK, "stroke-opacity": 0.35, "stroke-width": 1, class: "transient guide", visibility: "hidden" }, svg);
        Object.assign(state, { guide, x, plotW, width, duration });
        state.moveCursor = (t) => { cursor.setAttribute("x1", x(t)); cursor.setAttribute("x2", x(t)); };
        if (state.cursor !== null) state.moveCursor(state.cursor);
        return top + h + AXIS_H;
      },
    });
    // Pointer events on the whole SVG (set once: a redraw replaces only its children).
    const timeAt = (event) => {
      const rect = chart.svg.getBoundingClientRect();
      const px = ((event.clientX - rect.left) / rect.width) * state.width;
      return Math.max(0, Math.min(state.duration, ((px - PAD.left) / state.plotW) * state.duration));
    };
    chart.svg.addEventListener("click", (event) => options.onSeek(timeAt(event)));
    chart.svg.addEventListener("mousemove", (event) => {
      const t = timeAt(event);
      state.guide.setAttribute("x1", state.x(t));
      state.guide.setAttribute("x2", state.x(t));
      state.guide.setAttribute("visibility", "visible");
      showTooltip(options.hover(t), event);
    });
    chart.svg.addEventListener("mouseleave", () => { state.guide.setAttribute("visibility", "hidden"); hideTooltip(); });
    function showTooltip(content, event) {
      if (!content) { hideTooltip(); return; }
      if (!tooltip) { tooltip = html("div", "chart-tooltip"); tooltip.setAttribute("role", "status"); chart.element.append(tooltip); }
      tooltip.replaceChildren(html("strong", "", content.heading));
      content.rows.forEach((row) => {
        const line = html("div", "tooltip-row"), swatch = html("i");
        swatch.style.background = row.colour;
        line.append(swatch, html("span", "", row.label), html("b", "", row.value));
        tooltip.append(line);
      });
      tooltip.hidden = false;
      const box = chart.element.getBoundingClientRect();
      const left = event.clientX - box.left, room = box.width - left;
      // Beside the pointer, on the side with room, and never past the chart's edges.
      const wide = tooltip.offsetWidth || 160;
      const x = room > wide + 16 ? left + 12 : left - wide - 12;
      tooltip.style.top = `${Math.max(0, event.clientY - box.top + 14)}px`;
      tooltip.style.left = `${Math.max(0, Math.min(box.width - wide, x))}px`;
    }
    function hideTooltip() { if (tooltip) tooltip.hidden = true; }
    chart.moveCursor = (t) => { state.cursor = t; if (state.moveCursor) state.moveCursor(t); };
    return chart;
  }

  // Horizontal bars, one per row ({label, colour, value in 0..1, text}), each with its value written beside it.
  function barChart({ title: heading, rows, filename, ariaLabel, className }) {
    return figure({
      filename, ariaLabel, className,
      draw(svg, width) {
        const left = width < 500 ? 8 : PAD.left;
        const top = TITLE_H + 12 + title(svg, left, 16, heading, width - left - PAD.right);
        const labelW = Math.max(...rows.map((r) => r.label.length)) * 7 + 12, textW = 116;
        const barW = Math.max(40, width - left - labelW - textW - 8);
        rows.forEach((row, i) => {
          const y = top + i * 22;
          const g = el("g", { class: "bar", "data-label": row.label }, svg);
          label(g, left + labelW - 8, y + 13, row.label, { "text-anchor": "end", fill: INK });
          el("rect", { x: left + labelW, y, width: barW, height: 16, fill: "#f1f3f7" }, g);
          el("rect", { x: left + labelW, y, width: Math.max(row.value > 0 ? 1 : 0, row.value * barW), height: 16, fill: row.colour, class: "bar-value" }, g);
          label(g, left + labelW + barW + 6, y + 13, row.text, { fill: INK, class: "bar-text" });
        });
        return top + rows.length * 22 + 6;
      },
    });
  }

  return { el, html, timeChart, barChart, niceStep, seconds, percent };
})();
