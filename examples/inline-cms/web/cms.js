// inline-cms: fills [data-content] elements with published texts, and lets
// editors change them in place (open the page with #edit).
//
//   <h1 data-content="home.title">Welcome</h1>
//   <p data-content="home.greeting" data-content-args='{"name": "Ada"}'>Hello</p>
//   <script src="https://cms.example.com/cms.js" data-site="demo" defer></script>
//
// Texts are set with textContent only: nothing a text holds runs as HTML.
(() => {
  "use strict";
  const script = document.currentScript;
  const cms = new URL(script.src).origin;
  const site = script.dataset.site;
  const tokenKey = `inline-cms:${site}`;

  const getJSON = async (path, options = {}) => {
    const response = await fetch(cms + path, options);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error ? body.error.message : `${response.status} from ${path}`);
      error.status = response.status;
      throw error;
    }
    return body;
  };
  const textsOf = (locale) =>
    getJSON(`/content/${site}/${locale}.json`).catch((error) => {
      if (error.status === 404) return {}; // nothing published in that language yet
      throw error;
    });

  // The page's language if the site has it, else its base language, else the default.
  const chooseLocale = (available) => {
    const wanted = [script.dataset.locale, document.documentElement.lang, ...navigator.languages];
    for (const tag of wanted.filter(Boolean).map((t) => t.toLowerCase())) {
      for (const candidate of [tag, tag.split("-")[0]]) {
        if (available.locales.includes(candidate)) return candidate;
      }
    }
    return available.default;
  };

  const fill = (text, element) => {
    let args = {};
    try {
      args = JSON.parse(element.dataset.contentArgs || "{}") ?? {};
    } catch {
      // bad args on the page: show the placeholders rather than nothing
    }
    // The page's own args only: {toString} or {__proto__} is not filled from Object's built-ins.
    const given = (name) => typeof args === "object" && Object.hasOwn(args, name);
    return text.replace(/\{(\w+)\}/g, (whole, name) => (given(name) ? String(args[name]) : whole));
  };

  const elements = () => Array.from(document.querySelectorAll("[data-content]"));

  const show = (texts, fallback) => {
    for (const element of elements()) {
      const text = texts[element.dataset.content] ?? fallback[element.dataset.content];
      if (text !== undefined) element.textContent = fill(text, element);
    }
  };

  // -- editing ---------------------------------------------------------------------

  const api = (method, path, body) =>
    getJSON(`/api${path}`, {
      method,
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${localStorage.getItem(tokenKey) || ""}`,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const toolbar = () => {
    const bar = document.createElement("div");
    bar.id = "inline-cms-toolbar";
    Object.assign(bar.style, {
      position: "fixed", bottom: "0", left: "0", right: "0", padding: "8px 12px",
      background: "#222", color: "#fff", font: "14px sans-serif", zIndex: "2147483647",
      display: "flex", gap: "12px", alignItems: "center",
    });
    const status = document.createElement("span");
    status.id = "inline-cms-status";
    status.style.flex = "1";
    bar.append(status);
    const button = (label, action) => {
      const element = document.createElement("button");
      element.type = "button";
      element.textContent = label;
      element.addEventListener("click", action);
      bar.append(element);
      return element;
    };
    document.body.append(bar);
    return { bar, button, say: (text) => (status.textContent = text) };
  };

  const signIn = async (ui) => {
    const email = prompt(`Editor's email address for ${site}`);
    if (!email) return false;
    await getJSON("/api/signin", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ site, email }),
    });
    const code = prompt(`If ${email} edits ${site}, a code is on its way there. Code:`);
    if (!code) return false;
    const { token } = await getJSON("/api/confirm", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ site, email, code: code.trim() }),
    });
    localStorage.setItem(tokenKey, token);
    ui.say("Signed in.");
    return true;
  };

  const edit = async (locale, published, fallback) => {
    const ui = toolbar();
    if (!localStorage.getItem(tokenKey)) {
      ui.say(`Sign in to edit ${site} (${locale}).`);
      const start = ui.button("Sign in", async () => {
        try {
          if (await signIn(ui)) {
            start.remove();
            await startEditing(ui, locale, published, fallback);
          }
        } catch (error) {
          ui.say(error.message);
        }
      });
      return;
    }
    await startEditing(ui, locale, published, fallback).catch((error) => {
      if (error.status === 401) localStorage.removeItem(tokenKey);
      ui.say(`${error.message} Reload to sign in again.`);
    });
  };

  const startEditing = async (ui, locale, published, fallback) => {
    const { texts: drafts } = await api("GET", `/sites/${site}/${locale}/drafts`);
    const count = () => document.querySelectorAll("[data-cms-state=draft]").length;
    const report = () => ui.say(`Editing ${site} (${locale}): ${count()} unpublished.`);
    for (const element of elements()) {
      const key = element.dataset.content;
      // Editors edit the text itself, placeholders and all.
      const saved = drafts[key] ?? published[key] ?? fallback[key] ?? element.textContent;
      element.textContent = saved;
      element.dataset.cmsSaved = saved;
      if (key in drafts) element.dataset.cmsState = "draft";
      element.contentEditable = "plaintext-only";
      element.style.outline = "1px dashed #c60";
      element.addEventListener("blur", async () => {
        const text = element.textContent;
        if (text === element.dataset.cmsSaved) return;
        try {
          await api("PUT", `/sites/${site}/${locale}/drafts/${key}`, { text });
          element.dataset.cmsSaved = text;
          element.dataset.cmsState = "draft";
          report();
        } catch (error) {
          ui.say(`Not saved: ${error.message}`);
        }
      });
    }
    report();
    ui.button("Publish", async () => {
      try {
        const result = await api("POST", `/sites/${site}/${locale}/publish`);
        elements().forEach((element) => delete element.dataset.cmsState);
        ui.say(`Published ${result.published} changed texts of ${site} (${locale}).`);
      } catch (error) {
        ui.say(`Not published: ${error.message}`);
      }
    });
    ui.button("Sign out", async () => {
      await api("POST", "/signout").catch(() => {});
      localStorage.removeItem(tokenKey);
      location.hash = "";
      location.reload();
    });
  };

  const start = async () => {
    const available = await getJSON(`/content/${site}/locales.json`);
    const locale = chooseLocale(available);
    const [texts, fallback] = await Promise.all([
      textsOf(locale),
      locale === available.default ? {} : textsOf(available.default),
    ]);
    let editing = false;
    const editOnHash = async () => {
      if (editing || location.hash !== "#edit") return;
      editing = true;
      await edit(locale, texts, fallback);
    };
    // The page's own "#edit" link, or #edit typed after the page loaded, loads nothing new.
    window.addEventListener("hashchange", () =>
      editOnHash().catch((error) => console.warn(`inline-cms: ${error.message}`)),
    );
    if (location.hash === "#edit") {
      await editOnHash();
    } else {
      show(texts, fallback);
    }
    document.documentElement.dataset.cmsLocale = locale; // for styles and tests: texts are in
  };

  const run = () =>
    start().catch((error) => {
      // The page keeps the texts it was written with.
      console.warn(`inline-cms: ${error.message}`);
    });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
