// Subscriptions and topics: every subscription (filter by client, topic
// filter, share group) and the subscribed topic filters with their
// subscriber counts.
import * as api from "../api.js";
import {h, card, num} from "../ui.js";
import {searchList} from "../list.js";
import {tabs} from "../tabs.js";

export default function render(ctx) {
	tabs(ctx, "subscriptions", [
		{id: "subscriptions", label: "Subscriptions", render: subscriptions},
		{id: "topics", label: "Topics", render: topics},
	]);
}

function subscriptions(ctx, body) {
	searchList(ctx, body, {
		path: "/subscriptions", id: "subscriptions",
		search: [["client_id", "Client ID (exact)"], ["topic", "Topic filter contains"], ["share_group", "Share group"]],
		empty: "No subscription matches.",
		columns: [
			{title: "Client ID", class: "wrap", value: (s) => h("a", {href: "#/clients/" + api.seg(s.client_id)}, s.client_id)},
			{title: "Topic filter", class: "wrap mono", value: (s) => s.topic},
			{title: "Share group", value: (s) => s.share_group || "–"},
			{title: "QoS", class: "num", value: (s) => s.qos},
			{title: "Options", value: (s) => [s.no_local && "no local", s.retain_as_published && "retain as published",
				s.retain_handling ? `retain handling ${s.retain_handling}` : null].filter(Boolean).join(", ") || "–"},
			{title: "Node", value: (s) => s.node},
		],
	});
}

function topics(ctx, body) {
	searchList(ctx, body, {
		path: "/topics", id: "topics",
		search: [["topic", "Topic filter contains"]],
		empty: "No topic filter matches.",
		columns: [
			{title: "Topic filter", class: "wrap mono", value: (t) => t.topic},
			{title: "Subscribers", class: "num", value: (t) => num(t.subscribers)},
			{title: "Node", value: (t) => t.node},
		],
	});
}
