import { call, device } from "/api.js";

const $ = (selector) => document.querySelector(selector);
const status = (text) => { $("#status").textContent = text; };
const values = (form) => Object.fromEntries(new FormData(form).entries());

function show() {
  const registered = device.load();
  const pendingEmail = sessionStorage.getItem("taptapmail-pending");
  $("#register").hidden = Boolean(registered || pendingEmail);
  $("#confirm").hidden = Boolean(registered || !pendingEmail);
  $("#send").hidden = !registered;
  if (registered) {
    $("#me").textContent = registered.email;
    const target = `${location.origin}/send.html#`;
    $("#bookmarklet").href =
      `javascript:void(window.open(${JSON.stringify(target)}+new URLSearchParams({url:location.href,title:document.title}),"taptapmail","width=420,height=300"))`;
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
const link = new URLSearchParams(location.hash.slice(1));
history.replaceState(null, "", location.pathname);
if (link.get("confirm") && link.get("email")) {
  confirm(link.get("email"), link.get("confirm")).catch((error) => status(error.message));
}
show();
