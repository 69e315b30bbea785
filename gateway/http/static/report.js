// The report and dashboard pages' one script. The pages are shells: their content is HTML
// the gateway renders (pictures included, as SVG) and answers only to a bearer credential,
// so this fetches it with one. The credential comes from the fragment (`#token=...`, which
// browsers never send to a server: invitation-style links for interviewers) or from the form,
// is kept in this tab's sessionStorage (so the dashboard's links and pages need no credential
// in their URLs) and is wiped from the address bar at once.

const STORE = "interview-gateway.viewer-credential";
const status = document.getElementById("status");
const form = document.getElementById("credential-form");
const input = document.getElementById("credential");
const main = document.getElementById("content");

/** The API address of this page's content. */
function source() {
  const report = location.pathname.match(/^\/interview\/([^/]+)\/report$/);
  if (report) return `/v1/interviews/${encodeURIComponent(report[1])}/report`;
  return `/v1/dashboard${location.search}`;
}

function fromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const credential = params.get("token");
  if (credential) {
    sessionStorage.setItem(STORE, credential);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function ask(message) {
  status.textContent = message;
  form.hidden = false;
  main.dataset.state = "refused";
}

async function load() {
  const credential = sessionStorage.getItem(STORE);
  if (!credential) {
    ask("Enter a credential to continue.");
    return;
  }
  status.textContent = "Loading…";
  let response;
  try {
    response = await fetch(source(), {
      headers: { Authorization: `Bearer ${credential}` },
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    ask("The gateway could not be reached; try again.");
    return;
  }
  if (!response.ok) {
    let message = `The gateway refused (${response.status}).`;
    try {
      const error = (await response.json()).error;
      message = `Refused: ${error.message} (${error.code}).`;
    } catch {
      // not JSON: the status says enough
    }
    if (response.status === 401 || response.status === 403) sessionStorage.removeItem(STORE);
    ask(message);
    return;
  }
  // The gateway escaped everything it did not write itself (report_html.py).
  main.innerHTML = await response.text();
  const heading = main.querySelector("h1");
  if (heading) document.title = heading.textContent;
  main.dataset.state = "loaded";
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(STORE, input.value.trim());
  input.value = "";
  form.hidden = true;
  load();
});

fromFragment();
load();

// A printed report shows every table, the samples folded away on screen too.
window.addEventListener("beforeprint", () => {
  for (const details of document.querySelectorAll("details")) details.open = true;
});
