import { call, device } from "/api.js";

// Opened by the bookmarklet: /send.html#url=...&title=...
const page = new URLSearchParams(location.hash.slice(1));
const status = (text) => { document.querySelector("#status").textContent = text; };
const registered = device.load();

if (!registered) {
  status("This browser is not registered yet: open taptapmail's home page first.");
} else {
  call("/send", {
    client_id: registered.client_id,
    email: registered.email,
    subject: (page.get("title") || "").replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, 200) || undefined,
    url: page.get("url"),
  }).then(() => {
    status("Sent to your inbox.");
    setTimeout(() => window.close(), 1500);
  }, (error) => status(error.message));
}
