// DOM and formatting helpers shared by the pages. Data from devices (client
// ids, usernames, topics, payloads) only ever becomes text nodes: nothing here
// parses markup.

// h builds an element: h("a", {href: "#/x", class: "btn", onclick: fn, style: {color: "red"}}, "text", child).
// Children may be strings, numbers, nodes, arrays, or null/false (skipped).
export function h(tag, props, ...children) {
	const el = document.createElement(tag);
	for (const [k, v] of Object.entries(props || {})) {
		if (v == null || v === false) continue;
		if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
		else if (k === "class") el.className = v;
		// Styles through the CSSOM: the Content-Security-Policy forbids style attributes.
		else if (k === "style") for (const [p, pv] of Object.entries(v)) el.style.setProperty(p, pv);
		else if (k === "value" || k === "checked" || k === "disabled" || k === "selected") el[k] = v;
		else el.setAttribute(k, v === true ? "" : String(v));
	}
	append(el, children);
	return el;
}

function append(el, children) {
	for (const c of children) {
		if (c == null || c === false) continue;
		if (Array.isArray(c)) append(el, c);
		else el.append(c instanceof Node ? c : String(c));
	}
}

// svg builds an SVG element with attributes.
export function svg(tag, attrs, ...children) {
	const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
	for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
	for (const c of children) if (c != null) el.append(c instanceof Node ? c : String(c));
	return el;
}

// icon draws one of the stroke icons of the navigation.
const iconPaths = {
	overview: "M3 13h4v8H3zM10 8h4v13h-4zM17 3h4v18h-4z",
	clients: "M4 5h16v10H4zM9 19h6M12 15v4",
	subscriptions: "M4 6h16M4 12h10M4 18h6M18 14l3 3-3 3",
	retained: "M6 3h12v18l-6-4-6 4z",
	kafka: "M6 6a2 2 0 1 0 0.01 0M6 18a2 2 0 1 0 0.01 0M18 12a2 2 0 1 0 0.01 0M8 7l8 4M8 17l8-4",
	security: "M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z",
	cluster: "M12 3l8 4.5v9L12 21l-8-4.5v-9zM12 12l8-4.5M12 12v9M12 12L4 7.5",
	settings: "M12 9a3 3 0 1 0 0.01 0M19 12l2-1-1-3-2 .3-1.5-1.5.3-2-3-1-1 2h-2l-1-2-3 1 .3 2L6.6 7.3 4.6 7 3.6 10l2 1v2l-2 1 1 3 2-.3 1.5 1.5-.3 2 3 1 1-2h2l1 2 3-1-.3-2 1.5-1.5 2 .3 1-3-2-1z",
};
export function icon(name) {
	return svg("svg", {viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", "stroke-width": 1.8,
		"stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true"},
	svg("path", {d: iconPaths[name] || ""}));
}

// Formatting.
const nf = new Intl.NumberFormat("en-US");
export const num = (n) => (n == null || Number.isNaN(n) ? "–" : nf.format(n));

export function rate(n) {
	if (n == null || !Number.isFinite(n)) return "–";
	if (n >= 100) return nf.format(Math.round(n)) + "/s";
	return (Math.round(n * 10) / 10).toLocaleString("en-US") + "/s";
}

export function bytes(n) {
	if (n == null) return "–";
	const units = ["B", "KiB", "MiB", "GiB", "TiB"];
	let i = 0;
	while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
	return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

// siBytes is a rate axis label: decimal units, so round ticks stay round.
export function siBytes(n) {
	const units = ["B", "kB", "MB", "GB", "TB"];
	let i = 0;
	while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
	return `${Math.round(n * 10) / 10} ${units[i]}`;
}

export function duration(sec) {
	if (sec == null || !Number.isFinite(sec)) return "–";
	sec = Math.max(0, Math.round(sec));
	const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
	if (d) return `${d}d ${hh}h`;
	if (hh) return `${hh}h ${m}m`;
	if (m) return `${m}m ${s}s`;
	return `${s}s`;
}

export function time(v) {
	if (!v) return "–";
	const d = new Date(v);
	if (Number.isNaN(d.getTime())) return String(v);
	return d.toLocaleString("en-GB", {year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

// Page chrome.
export function card(title, ...body) {
	// title is a string or the nodes of the head (a heading and buttons).
	return h("section", {class: "card"}, title ? h("div", {class: "card-head"}, typeof title === "string" ? h("h2", null, title) : title) : null, ...body);
}

export function stat(label, value, sub, attrs) {
	return h("div", {class: "card stat", ...attrs}, h("div", {class: "label"}, label), h("div", {class: "value"}, value), sub ? h("div", {class: "sub"}, sub) : null);
}

export function badge(text, kind) {
	return h("span", {class: "badge" + (kind ? " " + kind : "")}, text);
}

// table renders rows with columns [{title, value(row) -> node|string, class}].
export function table(columns, rows, empty = "Nothing here.") {
	// Headings take only the alignment of their column.
	const head = h("tr", null, columns.map((c) => h("th", {class: /\bnum\b/.test(c.class) ? "num" : null}, c.title)));
	const body = rows.length
		? rows.map((r) => h("tr", null, columns.map((c) => h("td", {class: c.class}, c.value(r)))))
		: h("tr", null, h("td", {class: "empty", colspan: columns.length}, empty));
	return h("div", {class: "table-wrap"}, h("table", null, h("thead", null, head), h("tbody", null, body)));
}

// pager shows "page n" with previous/next; onPage(n) loads page n.
export function pager(page, hasNext, onPage, total) {
	return h("div", {class: "pager"},
		total != null ? h("span", null, `${num(total)} total`) : null,
		h("button", {class: "btn small", disabled: page <= 1, onclick: () => onPage(page - 1)}, "Previous"),
		h("span", null, `Page ${page}`),
		h("button", {class: "btn small", disabled: !hasNext, onclick: () => onPage(page + 1)}, "Next"));
}

// toast shows a short message in the corner for a few seconds.
export function toast(msg, kind) {
	let box = document.querySelector(".toasts");
	if (!box) document.body.append(box = h("div", {class: "toasts"}));
	const t = h("div", {class: "toast" + (kind ? " " + kind : ""), role: "status"}, msg);
	box.append(t);
	setTimeout(() => t.remove(), kind === "error" ? 7000 : 3500);
}

// dialog opens a modal with a title, body nodes and buttons; it resolves with
// the value of the button pressed (or null when dismissed). A button whose
// form is invalid keeps the dialog open.
export function dialog(title, body, buttons, cancelLabel = "Cancel") {
	return new Promise((resolve) => {
		const form = h("form", {method: "dialog"},
			h("h2", null, title), body,
			h("div", {class: "buttons"},
				h("button", {class: "btn", type: "button", value: "", onclick: () => dlg.close("")}, cancelLabel),
				buttons.map((b) => h("button", {class: "btn " + (b.class || "primary"), value: b.value, type: "submit"}, b.label))));
		const dlg = h("dialog", null, form);
		dlg.addEventListener("close", () => {
			dlg.remove();
			resolve(dlg.returnValue || null);
		});
		document.body.append(dlg);
		dlg.showModal();
	});
}

// confirm asks a yes/no question with a danger button.
export async function confirm(title, text, label = "Confirm") {
	return (await dialog(title, h("p", null, text), [{label, value: "yes", class: "danger"}])) === "yes";
}

// field is a labelled input.
export function field(label, input) {
	return h("label", {class: "field"}, label, input);
}

// debounce delays fn until ms passed without another call.
export function debounce(fn, ms) {
	let t;
	return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// run performs an API call from a button: after an optional confirmation
// (question = [title, text, button label]) it calls call(), shows done or the
// error as a toast, and then runs after (a reload) either way.
export async function run(call, {question, done, after} = {}) {
	if (question && !await confirm(...question)) return;
	try {
		await call();
		if (done) toast(done);
	} catch (e) {
		toast(e.message, "error");
	}
	if (after) after();
}

// form asks for values in a dialog: fields is [[name, label, input]] and the
// result is {name: value} (checkboxes give booleans), or null when cancelled.
export async function form(title, fields, label) {
	const body = fields.map(([, text, input]) => input.type === "checkbox"
		? h("label", {class: "check field"}, input, text) : field(text, input));
	if (await dialog(title, body, [{label, value: "ok"}]) !== "ok") return null;
	const out = {};
	for (const [name, , input] of fields) out[name] = input.type === "checkbox" ? input.checked : input.value.trim();
	return out;
}
