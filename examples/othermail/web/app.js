import { call, session } from "/api.js";

const $ = (selector) => document.querySelector(selector);
const status = (text) => { $("#status").textContent = text; };
const values = (form) => Object.fromEntries(new FormData(form).entries());

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attributes);
  node.append(...children);  // text stays text: no HTML from the server is ever parsed
  return node;
}

// A confirmation link waiting for the user's yes: { email, code }, or null.
let offer = null;

function show() {
  const signedIn = session.load();
  const pendingEmail = sessionStorage.getItem("othermail-pending");
  $("#link").hidden = !offer;
  $("#signup").hidden = Boolean(offer || signedIn || pendingEmail);
  $("#confirm").hidden = Boolean(offer || signedIn || !pendingEmail);
  $("#aliases").hidden = Boolean(offer || !signedIn);
  if (signedIn && !offer) {
    $("#me").textContent = signedIn.email;
    $("#domain").textContent = signedIn.domain;
    refresh().catch(failed);
  }
}

function failed(error) {
  if (error.code === "signed_out") {
    session.forget();
    show();
  }
  status(error.message);
}

function describe(alias) {
  const when = alias.expires ? new Date(alias.expires * 1000).toLocaleString() : null;
  const state = alias.state === "paused" && alias.paused_reason === "bounces"
    ? "paused: your mailbox refused its mail" : alias.state;
  return [
    state,
    `forwarded ${alias.forwarded}`, `blocked ${alias.blocked}`, `bounced ${alias.bounced}`,
    when ? (alias.state === "expired" ? `expired ${when}` : `expires ${when}`) : null,
  ].filter(Boolean).join(" · ");
}

function row(alias) {
  const item = element("li", { className: `alias ${alias.state}` });
  item.dataset.address = alias.address;
  const actions = element("span", { className: "actions" });
  if (alias.state === "active" || alias.state === "paused") {
    const paused = alias.state === "paused";
    const toggle = element("button", { type: "button", className: "toggle" }, paused ? "Resume" : "Pause");
    toggle.addEventListener("click", () => change(alias.address, { paused: !paused }));
    actions.append(toggle);
  }
  const remove = element("button", { type: "button", className: "delete" }, "Delete");
  remove.addEventListener("click", () => removeAlias(alias.address));
  actions.append(remove);
  item.append(
    element("code", { className: "address" }, alias.address),
    element("span", { className: "note" }, alias.note),
    element("span", { className: "counters" }, describe(alias)),
    actions,
  );
  return item;
}

async function refresh() {
  const { aliases } = await call("GET", "/api/aliases");
  $("#alias-list").replaceChildren(...aliases.map(row));
  $("#empty").hidden = aliases.length > 0;
}

async function change(address, body) {
  try {
    await call("PATCH", `/api/aliases/${encodeURIComponent(address)}`, body);
    await refresh();
  } catch (error) { failed(error); }
}

async function removeAlias(address) {
  if (!confirm(`Delete ${address}? Mail to it will be refused from now on, for good.`)) return;
  try {
    await call("DELETE", `/api/aliases/${encodeURIComponent(address)}`);
    status(`${address} is deleted.`);
    await refresh();
  } catch (error) { failed(error); }
}

async function confirmCode(email, code) {
  const { token, domain } = await call("POST", "/api/confirm", { email, code });
  if (session.load()) await call("POST", "/api/signout").catch(() => {});  // the other account's
  session.save({ token, email, domain });
  sessionStorage.removeItem("othermail-pending");
  status("You are signed in. Create your first alias.");
  show();
}

$("#signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = values(event.target);
  try {
    await call("POST", "/api/signup", body);
    sessionStorage.setItem("othermail-pending", body.email);
    status(`We mailed a code to ${body.email}.`);
    show();
  } catch (error) { status(error.message); }
});

$("#confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await confirmCode(sessionStorage.getItem("othermail-pending"), values(event.target).code);
  } catch (error) { status(error.message); }
});

$("#start-over").addEventListener("click", () => {
  sessionStorage.removeItem("othermail-pending");
  status("");
  show();
});

$("#create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { local_part, note, expires_in } = values(event.target);
  const body = { note };
  if (local_part) body.local_part = local_part;
  if (expires_in) body.expires_in = Number(expires_in);
  try {
    const alias = await call("POST", "/api/aliases", body);
    event.target.reset();
    status(`${alias.address} is ready.`);
    await refresh();
  } catch (error) { failed(error); }
});

$("#signout").addEventListener("click", async () => {
  await call("POST", "/api/signout").catch(() => {});
  session.forget();
  status("Signed out.");
  show();
});

$("#delete-account").addEventListener("click", async () => {
  if (!confirm("Delete your account? Every alias stops working for good and your address is forgotten.")) return;
  try {
    await call("DELETE", "/api/account");
    session.forget();
    status("Your account is deleted.");
    show();
  } catch (error) { failed(error); }
});

// The link in the confirmation mail: /#confirm=CODE&email=ADDRESS (a fragment: never sent to us).
// Anyone can send such a link, with a code for an address of their own, so it
// signs this browser in only when its user says yes, having seen the address:
// else the aliases they make next would forward to someone else's mailbox.
function readLink() {
  const link = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  const email = link.get("email");
  const code = link.get("confirm");
  if (!email || !code) return;
  const signedIn = session.load();
  if (signedIn && signedIn.email.toLowerCase() === email.toLowerCase()) {
    status(`You are already signed in as ${signedIn.email}.`);
    return;
  }
  offer = { email, code };
  if (signedIn) {
    $("#link-question").textContent =
      `You are signed in as ${signedIn.email}. Sign in as ${email} instead? ` +
      `Only say yes if you asked for a code for ${email} yourself: anyone can send you a link like this one.`;
    $("#link-accept").textContent = `Sign in as ${email}`;
    $("#link-decline").textContent = `Stay signed in as ${signedIn.email}`;
  } else {
    $("#link-question").textContent = `Sign in as ${email}? Your aliases will forward to that address.`;
    $("#link-accept").textContent = `Yes, sign in as ${email}`;
    $("#link-decline").textContent = "No, ignore this link";
  }
  status("");
  show();
  $("#link-accept").focus();
}

$("#link-accept").addEventListener("click", async () => {
  const { email, code } = offer;
  offer = null;
  show();
  try {
    await confirmCode(email, code);
  } catch (error) { status(error.message); }
});

$("#link-decline").addEventListener("click", () => {
  offer = null;
  status("Nothing changed: the link is ignored.");
  show();
});

window.addEventListener("hashchange", readLink);
readLink();
show();
