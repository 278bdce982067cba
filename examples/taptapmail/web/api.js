// The taptapmail API and this device's registration (kept in localStorage:
// the client id and the address never leave this device except to our API).
export const device = {
  load: () => JSON.parse(localStorage.getItem("taptapmail") || "null"),
  save: (value) => localStorage.setItem("taptapmail", JSON.stringify(value)),
  forget: () => localStorage.removeItem("taptapmail"),
};

export async function call(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error ? data.error.message : `HTTP ${response.status}`);
    error.code = data.error ? data.error.code : "http_error";
    throw error;
  }
  return data;
}
