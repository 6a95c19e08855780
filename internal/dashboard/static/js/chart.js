// A small SVG line chart for live rates: a time window sliding to the right
// (it grows from one minute to windowSec as samples arrive, so a fresh page
// uses the whole width), one line per series, a y axis with round ticks. No library: the
// dashboard draws a handful of lines a few times a minute.
import {h, svg, rate} from "./ui.js";

const W = 600, H = 220, PAD = {l: 52, r: 10, t: 10, b: 22};

export class LineChart {
	// series: [{name, color}]; windowSec: seconds shown; format: y label formatter.
	constructor(series, windowSec = 300, format = rate) {
		this.series = series;
		this.windowSec = windowSec;
		this.format = format;
		this.points = []; // [{t (ms), v: [..]}]
		this.svg = svg("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img"});
		this.el = h("div", null, this.svg,
			h("div", {class: "legend"}, series.map((s) => h("span", {style: {"--c": s.color}}, s.name))));
		this.draw();
	}

	push(t, values) {
		this.points.push({t, v: values});
		const cut = t - this.windowSec * 1000;
		while (this.points.length > 2 && this.points[0].t < cut) this.points.shift();
		this.draw();
	}

	draw() {
		const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
		const first = this.points.length ? this.points[0].t : now;
		const span = Math.min(this.windowSec, Math.max(60, Math.ceil((now - first) / 60000) * 60));
		const t0 = now - span * 1000;
		let max = 0;
		for (const p of this.points) for (const v of p.v) if (Number.isFinite(v)) max = Math.max(max, v);
		const step = niceStep(max / 4 || 1);
		const top = Math.max(step * 4, step * Math.ceil(max / step));
		const x = (t) => PAD.l + (t - t0) / (span * 1000) * (W - PAD.l - PAD.r);
		const y = (v) => H - PAD.b - v / top * (H - PAD.t - PAD.b);
		const nodes = [];
		for (let v = 0; v <= top + step / 2; v += step) {
			nodes.push(svg("line", {class: "grid-line", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v)}));
			nodes.push(svg("text", {class: "axis", x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end"}, this.format(v)));
		}
		const ticks = span / 60 <= 2 ? span / 15 : span / 60;
		for (let i = 0; i <= ticks; i++) {
			const ago = span - i * span / ticks;
			const label = ago === 0 ? "now" : ago < 60 || ago % 60 ? `-${Math.round(ago)}s` : `-${ago / 60}m`;
			nodes.push(svg("text", {class: "axis", x: PAD.l + i / ticks * (W - PAD.l - PAD.r), y: H - 5,
				"text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle"}, label));
		}
		this.series.forEach((s, i) => {
			const pts = this.points.filter((p) => Number.isFinite(p.v[i]));
			if (pts.length < 2) return;
			const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v[i]).toFixed(1)}`).join("");
			nodes.push(svg("path", {class: "series", d, stroke: s.color, "vector-effect": "non-scaling-stroke"}));
		});
		this.svg.replaceChildren(...nodes);
	}
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
function niceStep(raw) {
	const p = Math.pow(10, Math.floor(Math.log10(raw)));
	for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
	return 10 * p;
}

// RateTracker turns monotonically increasing counters into per-second rates
// between two samples; a counter that went down (node restart) gives no rate.
export class RateTracker {
	constructor() { this.last = null; }

	// sample takes {name: counter} and the time in ms; it returns {name: rate}
	// (null for the first sample or after a reset).
	sample(counters, t) {
		const prev = this.last;
		this.last = {t, c: counters};
		const out = {};
		for (const [k, v] of Object.entries(counters)) {
			const dt = prev ? (t - prev.t) / 1000 : 0;
			const before = prev ? prev.c[k] : undefined;
			out[k] = dt > 0 && Number.isFinite(before) && Number.isFinite(v) && v >= before ? (v - before) / dt : null;
		}
		return out;
	}
}
