import { call, device } from "/api.js";

const $ = (selector) => document.querySelector(selector);
const status = (text) => { $("#status").textContent = text; };
const values = (form) => Object.fromEntries(new FormData(form).entries());

// A confirmation link waiting for the user's yes: { email, code }, or null.
let offer = null;

function show() {
  const registered = device.load();
  const pendingEmail = sessionStorage.getItem("taptapmail-pending");
  $("#link").hidden = !offer;
  $("#register").hidden = Boolean(offer || registered || pendingEmail);
  $("#confirm").hidden = Boolean(offer || registered || !pendingEmail);
  $("#send").hidden = Boolean(offer || !registered);
  if (registered) {
    $("#me").textContent = registered.email;
    const target = `${location.origin}/send.html#`;
    $("#bookmarklet").href =
      `javascript:void(window.open(${JSON.stringify(target)}+new URLSearchParams({url:location.href,title:document.title}),"taptapmail","width=420,height=360"))`;
  }
}

async function confirm(email, code) {
  const { client_id } = await call("/confirm", { email, code });
  device.save({ client_id, email });
  sessionStorage.removeItem("taptapmail-pending");
  status("This device is registered. Send yourself something.");
  show();
}

$("#register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = values(event.target);
  try {
    await call("/register", body);
    sessionStorage.setItem("taptapmail-pending", body.email);
    status(`We mailed a code to ${body.email}.`);
    show();
  } catch (error) { status(error.message); }
});

$("#confirm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await confirm(sessionStorage.getItem("taptapmail-pending"), values(event.target).code);
  } catch (error) { status(error.message); }
});

$("#start-over").addEventListener("click", () => {
  sessionStorage.removeItem("taptapmail-pending");
  status("");
  show();
});

$("#send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { client_id, email } = device.load();
  const note = Object.fromEntries(Object.entries(values(event.target)).filter(([, v]) => v));
  try {
    await call("/send", { client_id, email, ...note });
    event.target.reset();
    status("Sent. It is on its way to your inbox.");
  } catch (error) { status(error.message); }
});

$("#unregister").addEventListener("click", async () => {
  const { client_id, email } = device.load();
  try {
    await call("/unregister", { client_id, email });
  } catch (error) {
    if (error.code !== "not_registered") { status(error.message); return; }
  }
  device.forget();
  status("This device is forgotten.");
  show();
});

// The link in the confirmation mail: /#confirm=CODE&email=ADDRESS (a fragment: never sent to us).
// Anyone can send such a link, with a code for an address of their own, so it
// registers this device only when its user says yes, having seen the address.
function readLink() {
  const link = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  const email = link.get("email");
  const code = link.get("confirm");
  if (!email || !code) return;
  const registered = device.load();
  if (registered && registered.email.toLowerCase() === email.toLowerCase()) {
    status(`This device already sends to ${registered.email}.`);
    return;
  }
  offer = { email, code };
  if (registered) {
    $("#link-question").textContent =
      `This device sends your notes to ${registered.email}. Send them to ${email} instead? ` +
      `Only say yes if you asked for a code for ${email} yourself: anyone can send you a link like this one.`;
    $("#link-accept").textContent = `Send to ${email} instead`;
    $("#link-decline").textContent = `Keep sending to ${registered.email}`;
  } else {
    $("#link-question").textContent = `Send notes from this device to ${email}?`;
    $("#link-accept").textContent = `Yes, send to ${email}`;
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
    await confirm(email, code);
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
