// The dashboard shell: session, sidebar, hash router and page lifecycle.
// Each page is a module in pages/ whose default export renders into the
// content area given a context (see Page below); it is loaded when first
// visited.
import * as api from "./api.js";
import * as auth from "./auth.js";
import {h, icon} from "./ui.js";

export const pages = [
	{path: "overview", title: "Overview", icon: "overview"},
	{path: "clients", title: "Clients", icon: "clients"},
	{path: "subscriptions", title: "Subscriptions & Topics", nav: "Subscriptions", icon: "subscriptions"},
	{path: "retained", title: "Retained Messages", nav: "Retained", icon: "retained"},
	{path: "kafka", title: "Kafka Bridge", icon: "kafka"},
	{path: "security", title: "Security", icon: "security"},
	{path: "cluster", title: "Cluster", icon: "cluster"},
	{path: "settings", title: "Settings", icon: "settings"},
];

const root = document.getElementById("app");
let user = null; // {username, role}
let current = null; // the running page's context

// Page is the context a page renders with. It stops its pollers when the
// user navigates away.
class Page {
	constructor(content, params, title) {
		this.root = content;
		this.params = params;
		this.user = user;
		this.canWrite = user.role === "admin";
		this.alive = true;
		this.timers = [];
		this.firstRuns = [];
		this.titleEl = title;
	}

	// every runs fn now and then every ms while the page is shown (skipping
	// ticks while the tab is hidden). fn's errors show on the page.
	every(ms, fn) {
		const run = async () => {
			if (!this.alive || document.hidden) return;
			try {
				await fn();
				this.clearError();
			} catch (e) {
				if (this.alive) this.error(e);
			}
		};
		this.firstRuns.push(run());
		this.timers.push(setInterval(run, ms));
	}

	// go navigates to another page (path such as "clients/abc").
	go(path) { location.hash = "#/" + path; }

	// refresh renders the page again.
	refresh() { route(); }

	error(e) {
		if (e instanceof api.ApiError && e.status === 401) return; // the login screen takes over
		let box = this.root.querySelector(":scope > .alert.page-error");
		if (!box) this.root.prepend(box = h("div", {class: "alert page-error", role: "alert"}));
		box.textContent = e.message || String(e);
	}

	clearError() {
		const box = this.root.querySelector(":scope > .alert.page-error");
		if (box) box.remove();
	}

	stop() {
		this.alive = false;
		this.timers.forEach(clearInterval);
	}
}

function shell() {
	const nav = h("ul", {class: "nav"}, pages.map((p) =>
		h("li", null, h("a", {href: "#/" + p.path, "data-page": p.path, title: p.title}, icon(p.icon), h("span", null, p.nav || p.title)))));
	const title = h("h1", {id: "page-title"});
	const layout = h("div", {class: "layout"},
		h("aside", {class: "side"},
			h("div", {class: "brand"}, h("img", {src: "favicon.svg", alt: ""}), h("span", null, "Culex", h("small", null, "MQTT broker"))),
			nav,
			h("div", {class: "side-foot", id: "node-name"})),
		h("div", {class: "main"},
			h("header", {class: "topbar"}, title,
				h("div", {class: "who"},
					h("span", {id: "who"}, user.username), h("span", {class: "badge"}, user.role),
					h("button", {class: "btn small", id: "logout", onclick: logout}, "Log out"))),
			h("main", {class: "content", id: "content"})));
	root.replaceChildren(layout);
}

async function route() {
	if (!user) return;
	if (!document.getElementById("content")) shell();
	const hash = location.hash.replace(/^#\/?/, "");
	const parts = hash.split("/").map(decodeURIComponent);
	const page = pages.find((p) => p.path === parts[0]);
	if (!page) {
		location.replace("#/overview");
		return;
	}
	if (current) current.stop();
	for (const a of document.querySelectorAll(".nav a")) a.classList.toggle("active", a.dataset.page === page.path);
	const title = document.getElementById("page-title");
	title.textContent = page.title;
	document.title = page.title + " · Culex";
	const content = h("main", {class: "content", id: "content", "data-page": page.path, "data-route": hash});
	document.getElementById("content").replaceWith(content);
	const ctx = current = new Page(content, parts.slice(1), title);
	try {
		const mod = await import(`./pages/${page.path}.js`);
		if (ctx.alive) await mod.default(ctx);
		await Promise.all(ctx.firstRuns);
	} catch (e) {
		ctx.error(e);
	}
	// data-loaded: the page has rendered its first data (or its error).
	content.dataset.loaded = "true";
}

async function logout() {
	try { await auth.logout(); } catch { /* the session is gone either way */ }
	signedOut();
}

function signedOut() {
	if (current) current.stop();
	current = null;
	user = null;
	auth.showLogin(root, signedIn);
}

function signedIn(u) {
	user = u;
	root.replaceChildren();
	route();
}

api.on("unauthorized", () => { if (user) signedOut(); });
api.on("passwordChange", () => {
	if (!user) return;
	const u = user;
	signedOut();
	auth.showPasswordChange(root, u, signedIn);
});
window.addEventListener("hashchange", route);

auth.restore().then((u) => (u ? (u.mustChangePassword ? auth.showPasswordChange(root, u, signedIn) : signedIn(u)) : auth.showLogin(root, signedIn)),
	() => auth.showLogin(root, signedIn));
