import { call, device } from "/api.js";

// Opened by the bookmarklet: /send.html#url=...&title=...
// Any site can open this page with a link of its choosing, so nothing is sent
// until the user, having seen what and to whom, presses "Send to me".
const $ = (selector) => document.querySelector(selector);
const page = new URLSearchParams(location.hash.slice(1));
const status = (text) => { $("#status").textContent = text; };
const registered = device.load();
const subject = (page.get("title") || "").replace(/[\u0000-\u001f\u007f]/g, " ").slice(0, 200);
const url = page.get("url") || "";

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") window.close();
});
$("#cancel").addEventListener("click", () => window.close());

if (!registered) {
  status("This browser is not registered yet: open taptapmail's home page first.");
} else if (!url) {
  status("There is no page to send: use the “send this page to me” bookmark.");
} else {
  $("#to").textContent = registered.email;
  $("#page-title").textContent = subject || "(no title)";
  $("#page-url").textContent = url;
  $("#preview").hidden = false;
  $("#send-page").focus();
  $("#send-page").addEventListener("click", async () => {
    $("#send-page").disabled = true;
    status("Sending…");
    try {
      await call("/send", {
        client_id: registered.client_id,
        email: registered.email,
        subject: subject || undefined,
        url,
      });
      $("#preview").hidden = true;
      status("Sent to your inbox.");
      setTimeout(() => window.close(), 1500);
    } catch (error) {
      $("#send-page").disabled = false;
      status(error.message);
    }
  });
}
