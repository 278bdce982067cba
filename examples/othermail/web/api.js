// The othermail API, and this browser's sign-in (kept in localStorage: the
// token and the address never leave this browser except to our API).
export const session = {
  load: () => JSON.parse(localStorage.getItem("othermail") || "null"),
  save: (value) => localStorage.setItem("othermail", JSON.stringify(value)),
  forget: () => localStorage.removeItem("othermail"),
};

export async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const signedIn = session.load();
  if (signedIn) headers.Authorization = `Bearer ${signedIn.token}`;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error ? data.error.message : `HTTP ${response.status}`);
    error.code = data.error ? data.error.code : "http_error";
    throw error;
  }
  return data;
}
