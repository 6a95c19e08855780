// Overview: the node's connections and message rates as live charts (rates
// computed here from the counters of GET /stats, polled every few seconds),
// the nodes, drops by reason, authentication outcomes and Kafka health.
import * as api from "../api.js";
import {LineChart, RateTracker} from "../chart.js";
import {h, card, stat, table, badge, num, rate, bytes, siBytes, duration} from "../ui.js";

const pollMs = 3000;

export default function render(ctx) {
	const msgChart = new LineChart([{name: "Messages in", color: "#0f9f73"}, {name: "Messages out", color: "#3b6fd8"}]);
	const byteChart = new LineChart([{name: "Bytes in", color: "#0f9f73"}, {name: "Bytes out", color: "#3b6fd8"}], 300, (v) => siBytes(v) + "/s");
	const connChart = new LineChart([{name: "Connected clients", color: "#8a5cd6"}], 300, num);
	const stats = h("div", {class: "grid stats", id: "overview-stats"});
	const nodes = h("div");
	const drops = h("div");
	const authBox = h("div");
	const kafka = h("div");
	ctx.root.append(stats,
		h("div", {class: "grid two"},
			card("Messages per second", msgChart.el),
			card("Traffic", byteChart.el)),
		h("div", {class: "grid two"},
			card("Connections", connChart.el),
			card("Kafka bridge", kafka)),
		card("Nodes", nodes),
		h("div", {class: "grid two"}, card("Dropped deliveries", drops), card("Authentication", authBox)));

	const rates = new RateTracker();
	ctx.every(pollMs, async () => {
		const [s, ns, k] = await Promise.all([api.get("/stats"), api.get("/nodes"), api.get("/kafka")]);
		const now = Date.now();
		const dropTotal = Object.values(s.drops || {}).reduce((a, b) => a + b, 0);
		const r = rates.sample({in: s.publishes_in, out: s.publishes_out, bin: s.bytes_in, bout: s.bytes_out, drops: dropTotal}, now);
		msgChart.push(now, [r.in, r.out]);
		byteChart.push(now, [r.bin, r.bout]);
		connChart.push(now, [s.clients_connected]);
		stats.replaceChildren(
			stat("Connected clients", num(s.clients_connected), `${num(s.sessions)} sessions, ${num(s.persistent_sessions)} persistent`, {"data-stat": "connections"}),
			stat("Messages in", rate(r.in), `${num(s.publishes_in)} total`),
			stat("Messages out", rate(r.out), `${num(s.publishes_out)} total`),
			stat("Subscriptions", num(s.subscriptions)),
			stat("Retained", num(s.retained)),
			stat("Dropped", num(dropTotal), r.drops ? rate(r.drops) : "none lately"));
		nodes.replaceChildren(nodeTable(ns));
		drops.replaceChildren(table([
			{title: "Reason", value: (d) => d[0]},
			{title: "Dropped", class: "num", value: (d) => num(d[1])},
		], Object.entries(s.drops || {}).sort((a, b) => b[1] - a[1]), "No delivery dropped since the start."));
		const a = s.auth || {};
		authBox.replaceChildren(h("dl", {class: "props"},
			h("dt", null, "Logins"), h("dd", null, num(a.success)),
			h("dt", null, "Anonymous"), h("dd", null, num(a.anonymous)),
			h("dt", null, "Failed"), h("dd", null, num(a.failure)),
			h("dt", null, "Refused (banned)"), h("dd", null, num(a.banned)),
			h("dt", null, "ACL denials"), h("dd", null, num(a.denied)),
			h("dt", null, "Connects / disconnects"), h("dd", null, `${num(s.connects)} / ${num(s.disconnects)}`)));
		kafka.replaceChildren(kafkaHealth(k));
	});
}

export function nodeTable(ns) {
	return table([
		{title: "Node", value: (n) => h("strong", null, n.name)},
		{title: "Status", value: (n) => badge(n.status, n.status === "running" ? "ok" : "bad")},
		{title: "Version", value: (n) => n.version},
		{title: "Uptime", value: (n) => duration(n.uptime_seconds)},
		{title: "Connections", class: "num", value: (n) => num(n.connections)},
		{title: "Sessions", class: "num", value: (n) => num(n.sessions)},
		{title: "Subscriptions", class: "num", value: (n) => num(n.subscriptions)},
		{title: "Retained", class: "num", value: (n) => num(n.retained)},
		{title: "Listeners", value: (n) => (n.listeners || []).map((l) => h("div", {class: "mono"}, l))},
	], ns || []);
}

function kafkaHealth(k) {
	if (!k.enabled) return h("p", {class: "muted"}, "The Kafka bridge is not configured on this node (kafka.brokers).");
	const routes = k.routes || [];
	const failed = routes.reduce((a, r) => a + (r.failed || 0), 0);
	const pending = routes.reduce((a, r) => a + (r.acked_not_in_kafka || 0), 0);
	const sp = k.spool || {};
	return h("div", null,
		h("dl", {class: "props"},
			h("dt", null, "Brokers"), h("dd", {class: "mono"}, k.brokers),
			h("dt", null, "Routes"), h("dd", null, `${routes.length} (${(k.commands || []).length} command routes)`),
			h("dt", null, "Failed produces"), h("dd", null, failed ? badge(num(failed), "bad") : badge("0", "ok")),
			h("dt", null, "Acknowledged, not yet in Kafka"), h("dd", null, pending ? badge(num(pending), "warn") : badge("0", "ok")),
			h("dt", null, "Spool"), h("dd", null, `${bytes(sp.bytes || 0)} in ${num(sp.entries || 0)} records` + (sp.entries ? `, oldest ${duration(sp.oldest_age_seconds)}` : "")),
			h("dt", null, "Held records"), h("dd", null, sp.held ? badge(num(sp.held), "bad") : badge("0", "ok"))),
		h("p", null, h("a", {href: "#/kafka"}, "Kafka bridge details →")));
}
