// Retained messages: list those whose topic matches a filter, view one with
// its payload, clear one.
import * as api from "../api.js";
import {h, card, num, bytes, time, toast, run, dialog} from "../ui.js";
import {searchList} from "../list.js";

export default function render(ctx) {
	const box = card(null);
	const load = searchList(ctx, box, {
		path: "/retained", id: "retained",
		search: [["topic", "Topic filter (default #)"]],
		empty: "No retained message matches.",
		columns: [
			{title: "Topic", class: "wrap mono", value: (m) => m.topic},
			{title: "QoS", class: "num", value: (m) => m.qos},
			{title: "Size", class: "num", value: (m) => bytes(m.payload_size)},
			{title: "Content type", value: (m) => m.content_type || "–"},
			{title: "From client", class: "wrap", value: (m) => m.from_client_id || "–"},
			{title: "Expires", value: (m) => (m.expires_at ? time(m.expires_at) : "never")},
			{title: "", class: "actions", value: (m) => [
				h("button", {class: "btn small", onclick: () => view(m.topic)}, "View"),
				ctx.canWrite ? h("button", {class: "btn small danger", onclick: () => run(() => api.del("/retained/" + api.seg(m.topic)), {
					question: ["Clear retained message", `Clear the retained message of ${m.topic}?`, "Clear"],
					done: "Retained message cleared", after: () => load(true)})}, "Clear") : null]},
		],
	});
	ctx.root.append(box);
}

async function view(topic) {
	let m;
	try {
		m = await api.get("/retained/" + api.seg(topic));
	} catch (e) {
		toast(e.message, "error");
		return;
	}
	const text = m.payload_text !== undefined && m.payload_text !== null;
	await dialog("Retained message", [
		h("dl", {class: "props"},
			h("dt", null, "Topic"), h("dd", {class: "mono"}, m.topic),
			h("dt", null, "QoS"), h("dd", null, m.qos),
			h("dt", null, "Size"), h("dd", null, `${num(m.payload_size)} bytes`),
			h("dt", null, "Payload"), h("dd", null, text ? "text" : "binary, shown as base64")),
		h("pre", {class: "block", style: {"margin-top": "12px"}}, text ? m.payload_text : m.payload || ""),
	], [], "Close");
}
