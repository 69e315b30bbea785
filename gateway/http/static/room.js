// The interview room: the page a candidate reaches from an invitation link
// (/interview/{id}#token=...). It drives an InterviewClient and turns its events into words:
// connection status, the live transcript, and a clear message for whatever went wrong.
// With an interviewer's or observer's token the same page watches the interview live instead
// ("Watch live"): the transcript and both voices, no microphone.
import { InterviewClient, openMedia, signalUrlFor } from "./interview-client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  alert: $("alert"),
  micLevel: $("mic-level"),
  micHint: $("mic-hint"),
  micCheck: $("mic-check"),
  start: $("start"),
  watch: $("watch"),
  title: $("title"),
  micPanel: $("mic-panel"),
  candidateAudio: $("candidate-audio"),
  mute: $("mute"),
  end: $("end"),
  transcript: $("transcript"),
  speaking: $("speaking"),
  empty: $("transcript-empty"),
  audio: $("remote-audio"),
};

/** Token roles that watch the interview rather than take it. */
const WATCHING_ROLES = new Set(["interviewer", "observer"]);

const STATUS_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  ended: "Interview ended",
  failed: "Disconnected",
};

const INVITATION_GONE =
  "The interview it was for has taken place. If you think this is a mistake, contact the person who invited you.";
const INVITATION_BAD =
  "This invitation link is not valid. Check that you opened the whole link from your invitation.";
const UNAVAILABLE = "The interviewer is not available right now. Please try again in a few minutes.";
const LOST =
  "The connection to your interview was lost and did not come back in time. Check your network, then reload this page to continue the interview.";
const RESTARTED = "The interview server restarted. Wait a minute, then reload this page to continue the interview.";

/** What the candidate reads when the interview ends (the gateway's end reason): what happened. */
const ENDED = {
  bye: "Thank you for your time. You can close this page.",
  candidate_ended: "Thank you for your time. You can close this page.",
  interview_complete: "The interviewer has finished. Thank you for your time; you can close this page.",
  replaced: "It continues in another window or tab.",
  time_limit: "The interview reached its time limit. Thank you for your time; you can close this page.",
  ended_by_admin: "The organisation that invited you ended the interview. You can close this page.",
  upstream_closed: "The interviewer ended the interview. Thank you for your time; you can close this page.",
  upstream_expired: "The interview reached its time limit. Thank you for your time; you can close this page.",
  upstream_remote_hangup: "The interviewer ended the interview. Thank you for your time; you can close this page.",
};
const ENDED_OTHERWISE = "The interview is over. You can close this page.";
/** What an interviewer or observer reads when watching ends. */
const WATCH_ENDED = {
  interview_ended: "The interview is over. Its report is available to your organisation.",
  observer_left: "You stopped watching. Reload this page to watch again while the interview is live.",
};

/** What the candidate reads for each error code: what happened, and what they can do. */
const MESSAGES = {
  microphone_denied: [
    "Microphone access is blocked",
    "Allow this site to use your microphone (in your browser's address bar or settings), then press “Check microphone” again.",
  ],
  microphone_missing: ["No microphone found", "Connect a microphone or headset, then press “Check microphone” again."],
  microphone_busy: ["The microphone is busy", "Another program is using it. Close that program, then try again."],
  media_unavailable: ["The microphone cannot be used here", "Open the invitation link in an up-to-date browser, over HTTPS."],
  token_expired: ["This invitation has expired", "Ask the person who invited you for a new link."],
  token_missing: ["This link is incomplete", INVITATION_BAD],
  token_invalid: ["This invitation is not valid", INVITATION_BAD],
  wrong_interview: ["This invitation is for another interview", INVITATION_BAD],
  interview_not_found: ["No interview at this address", INVITATION_BAD],
  interview_ended: ["This invitation was already used", INVITATION_GONE],
  invitation_used: ["This invitation was already used", INVITATION_GONE],
  token_not_yet_valid: ["This invitation is not valid yet", "Open the link again at the time you were given."],
  wrong_audience: ["This invitation is not valid here", INVITATION_BAD],
  role_not_allowed: ["This link cannot join the interview", INVITATION_BAD],
  interview_not_live: [
    "The interview has not started yet",
    "There is nothing to watch until the candidate joins. Reload this page in a minute.",
  ],
  listen_unavailable: [
    "The voices cannot be heard for this interview",
    "Only relayed interviews can be listened to; the transcript still follows live.",
  ],
  interview_in_progress: [
    "This interview is open in another window",
    "Continue it in the window or tab where you started it. If you closed that one, wait a minute, then reload this page.",
  ],
  rate_limited: ["Too many attempts", "Wait a minute, then reload this page."],
  keys_unavailable: ["The interview server cannot check your invitation", "Try again in a few minutes."],
  at_capacity: ["The interviewer is busy", UNAVAILABLE],
  upstream_failed: ["The interviewer could not be reached", UNAVAILABLE],
  upstream_unavailable: ["The interviewer could not be reached", UNAVAILABLE],
  relay_unavailable: ["The interviewer could not be reached", UNAVAILABLE],
  connection_lost: [
    "The connection was lost",
    "We could not reconnect. Check your network, then reload this page to rejoin the interview.",
  ],
  signaling_unreachable: ["The interview server cannot be reached", "Check your network, then reload this page."],
  // why a started interview failed (the gateway's end reasons)
  peer_silent: ["The connection was lost", LOST],
  peer_failed: ["The connection was lost", LOST],
  peer_closed: ["The connection was lost", LOST],
  signaling_disconnected: ["The connection was lost", LOST],
  signaling_ping_timeout: ["The connection was lost", LOST],
  shutdown: ["The interview was interrupted", RESTARTED],
  gateway_lost: ["The interview was interrupted", RESTARTED],
  worker_lost: ["The interview was interrupted", RESTARTED],
  upstream_closed: ["The interviewer could not be reached", UNAVAILABLE],
  upstream_sideband_closed: ["The interviewer could not be reached", UNAVAILABLE],
  upstream_content: ["The interviewer stopped the interview", "Contact the person who invited you."],
  integrity_violation: [
    "The interview was stopped",
    "The interviewer's settings were changed from this page. Contact the person who invited you.",
  ],
};

/** The message of a failure reason: its own, or the family's (`upstream_*`, `signaling_*`). */
function messageFor(code) {
  if (MESSAGES[code]) return MESSAGES[code];
  if (code?.startsWith("upstream_")) return MESSAGES.upstream_failed;
  if (code?.startsWith("signaling_") || code?.startsWith("peer_")) return MESSAGES.peer_closed;
  return null;
}

const interviewId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
const token = takeToken();
const watching = WATCHING_ROLES.has(tokenClaims(token)?.role);
let stream = null;
let client = null;
let meterFrame = 0;
let meterContext = null;

/** The token from the link's fragment, kept for this tab only so that a reload can rejoin. */
function takeToken() {
  const key = `interview-token:${interviewId}`;
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    sessionStorage.setItem(key, fromLink);
    history.replaceState(null, "", location.pathname + location.search); // off the address bar
    return fromLink;
  }
  return sessionStorage.getItem(key);
}

/** A JWT's claims (role, exp, ...), read without verifying (the gateway verifies), or null. */
function tokenClaims(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload));
  } catch {
    return null;
  }
}

function showAlert(title, text, kind = "error") {
  ui.alert.replaceChildren();
  const strong = document.createElement("strong");
  strong.textContent = title;
  ui.alert.append(strong, document.createTextNode(text));
  ui.alert.dataset.kind = kind;
  ui.alert.setAttribute("role", kind === "error" ? "alert" : "status");
  ui.alert.hidden = false;
  ui.alert.scrollIntoView({ block: "nearest" }); // on a phone it may be out of view
}

function hideAlert() {
  ui.alert.hidden = true;
}

function showError(code, message) {
  const [title, text] = messageFor(code) ?? [
    "Something went wrong",
    `${message ?? code}. Reload this page to try again; if it keeps happening, contact the person who invited you.`,
  ];
  showAlert(title, text, "error");
}

function setStatus(state, mode) {
  ui.status.dataset.state = state;
  const text = watching && state === "connected" ? "Watching live" : STATUS_TEXT[state];
  ui.status.textContent = text + (state === "connected" && mode ? ` (${mode})` : "");
}

// --- microphone ---------------------------------------------------------------------------------

async function getMicrophone() {
  if (stream) return stream;
  try {
    stream = await openMedia();
  } catch (err) {
    showError(err.code, err.message);
    ui.micHint.textContent = "The microphone is not available.";
    throw err;
  }
  hideAlert();
  ui.micHint.textContent = "Microphone ready: speak, and the bar should move.";
  showLevel(stream);
  return stream;
}

/** Stop every device the page opened (microphone, camera) and the level meter: every ending
 * path calls this, so the browser's recording indicator goes off with the interview. */
function releaseMedia() {
  cancelAnimationFrame(meterFrame);
  for (const track of stream?.getTracks() ?? []) track.stop();
  stream = null;
  meterContext?.close().catch(() => {});
  meterContext = null;
  ui.micLevel.value = 0;
  ui.micHint.textContent = "Microphone off.";
}

/** Drive the level meter from the microphone: the candidate sees they are heard. */
function showLevel(mediaStream) {
  const context = (meterContext = new AudioContext());
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(mediaStream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    ui.micLevel.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    meterFrame = requestAnimationFrame(tick);
  };
  tick();
}

// --- transcript ---------------------------------------------------------------------------------

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const speakerName = (role) => (role === "candidate" ? (watching ? "Candidate" : "You") : "Interviewer");

function addLine({ role, text, at }) {
  const item = document.createElement("li");
  item.className = "line";
  item.dataset.role = role;
  const speaker = document.createElement("span");
  speaker.className = "speaker";
  speaker.textContent = speakerName(role);
  const time = document.createElement("time");
  time.dateTime = at.toISOString();
  time.textContent = timeFormat.format(at);
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(speaker, time, body);
  ui.transcript.append(item);
  ui.empty.hidden = true;
  item.scrollIntoView({ block: "nearest" });
}

function onTranscript({ detail }) {
  if (detail.final) {
    ui.speaking.hidden = true;
    if (detail.text) addLine(detail);
  } else {
    ui.speaking.textContent = `${speakerName(detail.role)}: ${detail.text}…`;
    ui.speaking.hidden = false;
  }
}

// --- the interview ------------------------------------------------------------------------------

function onState({ detail: { state, reason } }) {
  setStatus(state, client.mode);
  const live = state === "connected" || state === "reconnecting";
  ui.mute.disabled = !live;
  ui.end.disabled = !live;
  if (state === "reconnecting") {
    showAlert("Connection lost", "Reconnecting to your interview… please stay on this page.", "warn");
  } else if (state === "connected") {
    hideAlert();
  } else if (state === "ended") {
    ui.speaking.hidden = true;
    releaseMedia();
    showAlert("The interview has ended", ENDED[reason] ?? ENDED_OTHERWISE, "info");
  } else if (state === "failed") {
    ui.speaking.hidden = true;
    releaseMedia(); // the error event already said what happened
  }
}

async function startInterview() {
  ui.start.disabled = true;
  ui.micCheck.disabled = true;
  try {
    await getMicrophone();
  } catch {
    ui.start.disabled = false;
    ui.micCheck.disabled = false;
    return;
  }
  client = new InterviewClient({
    signalUrl: signalUrlFor(interviewId),
    token,
    stream,
    audioElement: ui.audio,
  });
  globalThis.interviewClient = client; // for diagnostics from the console (and the tests)
  client.addEventListener("statechange", onState);
  client.addEventListener("transcript", onTranscript);
  client.addEventListener("error", ({ detail }) => {
    if (detail.fatal) showError(detail.code, detail.message);
  });
  try {
    await client.start();
    ui.mute.focus();
  } catch {
    // the error event already said what happened
  }
}

// --- watching (an interviewer's or observer's token) --------------------------------------------

function onWatchState({ detail: { state, reason } }) {
  setStatus(state, client.mode);
  ui.end.disabled = !(state === "connected" || state === "reconnecting");
  if (state === "reconnecting") {
    showAlert("Connection lost", "Reconnecting to the interview… please stay on this page.", "warn");
  } else if (state === "connected") {
    hideAlert();
  } else if (state === "ended") {
    ui.speaking.hidden = true;
    showAlert("Watching has ended", WATCH_ENDED[reason] ?? ENDED_OTHERWISE, "info");
  } else if (state === "failed") {
    ui.speaking.hidden = true;
  }
}

async function watchLive() {
  ui.watch.disabled = true;
  client = new InterviewClient({
    signalUrl: signalUrlFor(interviewId),
    token,
    role: "observer",
    listen: true,
    audioElements: { candidate: ui.candidateAudio, interviewer: ui.audio },
  });
  globalThis.interviewClient = client; // for diagnostics from the console (and the tests)
  client.addEventListener("statechange", onWatchState);
  client.addEventListener("transcript", onTranscript);
  // the mode is known once the voices' peer connection is answered
  client.addEventListener("remotestream", () => setStatus(client.state, client.mode));
  client.addEventListener("error", ({ detail }) => {
    if (detail.fatal) showError(detail.code, detail.message);
    else if (detail.code === "listen_unavailable") showError(detail.code, detail.message);
  });
  try {
    await client.start();
    ui.end.focus();
  } catch {
    // the error event already said what happened
  }
}

/** The page for watching: no microphone, no mute; "Watch live" and "Stop watching". */
function showWatchView() {
  document.title = "Watching an interview";
  ui.title.textContent = "Watching the interview";
  ui.micPanel.hidden = true;
  ui.start.hidden = true;
  ui.mute.hidden = true;
  ui.watch.hidden = false;
  ui.end.textContent = "Stop watching";
  ui.empty.textContent = "The conversation will appear here, from its beginning, once you watch.";
}

function toggleMute() {
  const muted = !client.muted;
  client.setMuted(muted);
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.micHint.textContent = muted ? "You are muted." : "Microphone on.";
}

async function endInterview() {
  ui.end.disabled = true;
  ui.mute.disabled = true;
  await client.end();
}

function init() {
  setStatus("idle");
  ui.micCheck.addEventListener("click", () => getMicrophone().catch(() => {}));
  ui.start.addEventListener("click", startInterview);
  ui.mute.addEventListener("click", toggleMute);
  ui.end.addEventListener("click", endInterview);
  ui.watch.addEventListener("click", watchLive);
  if (watching) showWatchView();
  if (!token) {
    showError("token_missing");
    ui.start.disabled = true;
    return;
  }
  const exp = tokenClaims(token)?.exp ?? null;
  if (exp !== null && exp * 1000 < Date.now()) {
    showError("token_expired");
    ui.start.disabled = true;
    ui.watch.disabled = true;
  }
}

init();
