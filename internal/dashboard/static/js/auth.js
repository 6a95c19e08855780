// Login, the forced password change of a new account (the first start's
// admin/public) and logout, over /api/v1/login, /me, /me/password, /logout.
import * as api from "./api.js";
import {h, field} from "./ui.js";

// user turns the API's Me into the dashboard's user and keeps its CSRF token.
function user(me) {
	if (me.csrf_token) api.setCSRF(me.csrf_token);
	return {username: me.username, role: me.role, mustChangePassword: !!me.must_change_password};
}

// restore returns the user of an existing session, or null.
export async function restore() {
	try {
		return user(await api.get("/me"));
	} catch (e) {
		if (e.status === 401) return null;
		throw e;
	}
}

export async function logout() {
	await api.post("/logout");
	api.setCSRF("");
}

function frame(...body) {
	return h("div", {class: "login-wrap"},
		h("div", {class: "login"},
			h("div", {class: "brand"}, h("img", {src: "favicon.svg", alt: ""}), h("span", null, "Culex", h("small", null, "MQTT broker dashboard"))),
			...body));
}

// showLogin renders the login form; done(user) runs once logged in (after
// the forced password change when the account needs one).
export function showLogin(root, done) {
	const username = h("input", {name: "username", id: "login-username", autocomplete: "username", required: true, autofocus: true});
	const password = h("input", {name: "password", id: "login-password", type: "password", autocomplete: "current-password", required: true});
	const error = h("div", {class: "alert hidden", role: "alert", id: "login-error"});
	const button = h("button", {class: "btn primary", type: "submit", id: "login-submit"}, "Log in");
	const form = h("form", {id: "login-form", onsubmit: async (ev) => {
		ev.preventDefault();
		button.disabled = true;
		error.classList.add("hidden");
		try {
			const u = user(await api.post("/login", {username: username.value, password: password.value}));
			if (u.mustChangePassword) showPasswordChange(root, u, done, password.value);
			else done(u);
		} catch (e) {
			error.textContent = e.status === 401 ? "Wrong username or password." : e.message;
			error.classList.remove("hidden");
			button.disabled = false;
			password.select();
		}
	}}, error, field("Username", username), field("Password", password), button);
	root.replaceChildren(frame(form));
	username.focus();
}

// showPasswordChange renders the forced password change; the account can do
// nothing else until it is done. oldPassword, when known from the login just
// made, is filled in.
export function showPasswordChange(root, u, done, oldPassword = "") {
	const old = h("input", {name: "old_password", id: "pw-old", type: "password", autocomplete: "current-password", required: true, value: oldPassword});
	const pw = h("input", {name: "new_password", id: "pw-new", type: "password", autocomplete: "new-password", required: true, minlength: 8, maxlength: 72});
	const again = h("input", {name: "confirm", id: "pw-confirm", type: "password", autocomplete: "new-password", required: true});
	const error = h("div", {class: "alert hidden", role: "alert", id: "pw-error"});
	const button = h("button", {class: "btn primary", type: "submit", id: "pw-submit"}, "Change password");
	const fail = (msg) => {
		error.textContent = msg;
		error.classList.remove("hidden");
		button.disabled = false;
	};
	const form = h("form", {id: "pw-form", onsubmit: async (ev) => {
		ev.preventDefault();
		if (pw.value !== again.value) return fail("The two new passwords differ.");
		if (pw.value === old.value) return fail("Choose a password different from the current one.");
		button.disabled = true;
		try {
			done(user(await api.post("/me/password", {old_password: old.value, new_password: pw.value})));
		} catch (e) {
			fail(e.message);
		}
	}},
	h("p", null, `Welcome, ${u.username}. This account still has its initial password: choose a new one (8 to 72 characters) before going on.`),
	error, oldPassword ? null : field("Current password", old), field("New password", pw), field("Repeat the new password", again), button,
	h("p", {class: "muted switch"}, h("a", {href: "#", onclick: async (ev) => {
		ev.preventDefault();
		try { await logout(); } catch { /* gone anyway */ }
		showLogin(root, done);
	}}, "Log out")));
	root.replaceChildren(frame(h("h2", null, "Change your password"), form));
	(oldPassword ? pw : old).focus();
}
