// The page: sign-in, then a hash router over the views.

import { api, ApiError, setCsrf } from "./api.js";
import { clear, flash, h } from "./dom.js";
import { applyStatic, t, toggleLang } from "./i18n.js";
import { alertView, caseView, casesView, deliveriesView, queueView } from "./views.js";

export const session = { me: null };
const main = () => document.getElementById("main");

function loginView(root) {
  const name = h("input", { name: "name", id: "login-name", autocomplete: "username", required: true });
  const password = h("input", { name: "password", id: "login-password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", id: "login-error", hidden: true });
  const form = h("form", { class: "login", id: "login-form" },
    h("h1", {}, t("sign_in")),
    h("label", {}, t("name"), name),
    h("label", {}, t("password"), password),
    error,
    h("button", { type: "submit", id: "login-submit" }, t("sign_in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    try {
      const me = await api("POST", "/session", { name: name.value, password: password.value });
      setCsrf(me.csrf_token);
      session.me = { name: me.name, role: me.role, via: "session" };
      signedIn();
      // A deep link (an alert's or a case's page) opens once signed in.
      if (!/^#\/(alert|case)\//.test(location.hash)) location.hash = "#/queue";
      route();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? t("bad_credentials") : e.message;
      error.hidden = false;
    }
  });
  root.append(form);
  setTimeout(() => name.focus(), 0);
}

function signedIn() {
  const me = session.me;
  document.getElementById("nav").hidden = !me;
  document.getElementById("signout").hidden = !me || me.via !== "session";
  document.getElementById("nav-deliveries").hidden = !me || me.role !== "admin";
  document.getElementById("who").textContent = me ? `${me.name} (${me.role})` : "";
  document.body.dataset.role = me ? me.role : "";
}

export function canAct() {
  return session.me && (session.me.role === "analyst" || session.me.role === "admin");
}

// Renders overlap (a hash change and an action's refresh): each one builds
// its own view and only the latest is put on the page.
let generation = 0;

export async function route() {
  const gen = ++generation;
  const root = h("div", { class: "view" });
  applyStatic();
  try {
    await render(root);
  } finally {
    if (gen === generation) clear(main()).append(root);
  }
}

async function render(root) {
  if (!session.me) { loginView(root); return; }
  const [path, qs] = (location.hash.replace(/^#/, "") || "/queue").split("?");
  const params = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "alert" && parts[1]) await alertView(root, decodeURIComponent(parts[1]));
    else if (parts[0] === "case" && parts[1]) await caseView(root, decodeURIComponent(parts[1]));
    else if (parts[0] === "cases") await casesView(root, params);
    else if (parts[0] === "deliveries") await deliveriesView(root, params);
    else await queueView(root, params);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    root.append(h("p", { class: "error" }, e.message));
  }
}

async function start() {
  document.getElementById("lang").addEventListener("click", () => { toggleLang(); route(); });
  const root = document.documentElement;  // rem sizes follow the root's font size
  root.classList.toggle("large", localStorage.getItem("ff-large") === "1");
  document.getElementById("large").addEventListener("click", () => {
    const on = !root.classList.contains("large");
    root.classList.toggle("large", on);
    localStorage.setItem("ff-large", on ? "1" : "0");
  });
  document.getElementById("signout").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch { /* signed out either way */ }
    session.me = null; setCsrf(null); signedIn(); location.hash = "#/"; route();
  });
  window.addEventListener("ff-signed-out", () => { session.me = null; setCsrf(null); signedIn(); route(); });
  window.addEventListener("hashchange", route);
  try {
    const me = await api("GET", "/me");
    setCsrf(me.csrf_token);
    session.me = me;
  } catch (e) {
    if (!(e instanceof ApiError)) flash(e.message, "error");
    session.me = null;
  }
  signedIn();
  route();
}

start();
