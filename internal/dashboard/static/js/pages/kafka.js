// Kafka bridge: per route rates (computed here from the counters of GET
// /kafka), failures, in-flight and acknowledged-not-yet-in-Kafka records,
// the spool, the command routes and the held records with retry and drop.
import * as api from "../api.js";
import {LineChart, RateTracker} from "../chart.js";
import {h, card, stat, table, badge, num, rate, bytes, duration, time, run} from "../ui.js";
import {searchList} from "../list.js";

const pollMs = 3000;

export default async function render(ctx) {
	const first = await api.get("/kafka");
	if (!first.enabled) {
		ctx.root.append(card("Kafka bridge", h("p", {id: "kafka-off"}, "The Kafka bridge is not configured on this node. ",
			"Set kafka.brokers and kafka.routes in the configuration (docs/kafka.md) to forward MQTT messages to Kafka and Kafka commands to devices.")));
		return;
	}
	const chart = new LineChart([{name: "Produced", color: "#0f9f73"}, {name: "Failed", color: "#d23c3c"}]);
	const stats = h("div", {class: "grid stats"});
	const routes = h("div", {id: "kafka-routes"});
	const commands = h("div", {id: "kafka-commands"});
	const spool = h("div", {id: "kafka-spool"});
	const held = card("Held records");
	ctx.root.append(stats, h("div", {class: "grid two"}, card("Records per second (all routes)", chart.el), card("Spool", spool)),
		card("Routes (MQTT → Kafka)", routes), card("Command routes (Kafka → MQTT)", commands), held);

	const total = new RateTracker();
	const perRoute = new Map(); // route name -> RateTracker
	ctx.every(pollMs, async () => {
		const k = await api.get("/kafka");
		const now = Date.now();
		const rs = k.routes || [];
		const sum = (f) => rs.reduce((a, r) => a + (r[f] || 0), 0);
		const r = total.sample({produced: sum("produced"), failed: sum("failed")}, now);
		chart.push(now, [r.produced, r.failed]);
		const sp = k.spool || {};
		stats.replaceChildren(
			stat("Produced", rate(r.produced), `${num(sum("produced"))} total`),
			stat("Failed", num(sum("failed")), r.failed ? rate(r.failed) : "none lately"),
			stat("In flight", num(sum("in_flight"))),
			stat("Acked, not in Kafka", num(sum("acked_not_in_kafka"))),
			stat("Spool", bytes(sp.bytes || 0), sp.entries ? `${num(sp.entries)} records, oldest ${duration(sp.oldest_age_seconds)}` : "empty"),
			stat("Held", num(sp.held || 0), sp.held ? `for ${duration(sp.held_age_seconds)}` : "none"));
		spool.replaceChildren(h("dl", {class: "props"},
			h("dt", null, "Brokers"), h("dd", {class: "mono"}, k.brokers),
			h("dt", null, "Records waiting"), h("dd", null, num(sp.entries || 0)),
			h("dt", null, "Bytes waiting"), h("dd", null, bytes(sp.bytes || 0)),
			h("dt", null, "Oldest waiting"), h("dd", null, sp.entries ? duration(sp.oldest_age_seconds) : "–"),
			h("dt", null, "Held records"), h("dd", null, sp.held ? badge(`${num(sp.held)} for ${duration(sp.held_age_seconds)}`, "bad") : badge("none", "ok")),
			h("dt", null, "Held topics"), h("dd", {class: "mono"}, (sp.held_topics || []).join(", ") || "–")),
		h("p", {class: "muted"}, "Routes with ack: spool acknowledge a publish once its record is on disk here; the spool drains to Kafka in order. ",
			"Records Kafka refuses are held and retried with backoff."));
		const rates = rs.map((x) => {
			if (!perRoute.has(x.name)) perRoute.set(x.name, new RateTracker());
			return perRoute.get(x.name).sample({produced: x.produced, failed: x.failed}, now);
		});
		routes.replaceChildren(table([
			{title: "Route", value: (x) => h("strong", null, x.name)},
			{title: "MQTT filter", class: "mono wrap", value: (x) => x.filter},
			{title: "Kafka topic", class: "mono wrap", value: (x) => x.topic},
			{title: "Ack", value: (x) => x.ack},
			{title: "Rate", class: "num", value: (x) => rate(rates[rs.indexOf(x)].produced)},
			{title: "Produced", class: "num", value: (x) => num(x.produced)},
			{title: "Failed", class: "num", value: (x) => (x.failed ? badge(num(x.failed), "bad") : "0")},
			{title: "Expired", class: "num", value: (x) => num(x.expired)},
			{title: "In flight", class: "num", value: (x) => num(x.in_flight)},
			{title: "Acked, not in Kafka", class: "num", value: (x) => num(x.acked_not_in_kafka)},
			{title: "Spool", class: "num", value: (x) => (x.spool_bytes ? `${bytes(x.spool_bytes)}, ${duration(x.spool_oldest_age_seconds)}` : "–")},
		], rs, "No routes."));
		commands.replaceChildren(table([
			{title: "Route", value: (c) => h("strong", null, c.name)},
			{title: "Consumed", class: "num", value: (c) => num(c.consumed)},
			{title: "Published", class: "num", value: (c) => num(c.published)},
			{title: "Committed", class: "num", value: (c) => num(c.committed)},
			{title: "Invalid", class: "num", value: (c) => num(c.invalid)},
			{title: "Undeliverable", class: "num", value: (c) => num(c.undeliverable)},
			{title: "Stalled", class: "num", value: (c) => (c.stalled ? badge(num(c.stalled), "warn") : "0")},
		], k.commands || [], "No command routes."));
	});

	const load = searchList(ctx, held, {
		path: "/kafka/held", id: "held",
		search: [["topic", "Kafka topic"]],
		empty: "No held records: Kafka accepts everything the spool sends.",
		columns: [
			{title: "Seq", class: "num", value: (x) => x.seq},
			{title: "Kafka topic", class: "mono wrap", value: (x) => x.topic},
			{title: "Route", value: (x) => x.route},
			{title: "Key", class: "mono wrap", value: (x) => x.key || "–"},
			{title: "Size", class: "num", value: (x) => bytes(x.size)},
			{title: "Held since", value: (x) => time(x.held_since)},
			{title: "State", value: (x) => (x.retrying ? badge("retrying", "warn") : badge("waiting"))},
			{title: "", class: "actions", value: (x) => (ctx.canWrite ? [
				h("button", {class: "btn small", onclick: () => run(() => api.post(`/kafka/held/${api.seg(x.topic)}/retry`),
					{done: `Retrying the held records of ${x.topic}`, after: () => load(true)})}, "Retry topic"),
				h("button", {class: "btn small danger", onclick: () => run(() => api.del(`/kafka/held/${api.seg(x.topic)}`), {
					question: ["Drop held records", `Drop every held record of Kafka topic ${x.topic}? They were acknowledged to devices: they are lost.`, "Drop"],
					done: `Held records of ${x.topic} dropped`, after: () => load(true)})}, "Drop topic"),
			] : null)},
		],
	});
}
