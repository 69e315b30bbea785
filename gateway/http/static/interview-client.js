// interview-client.js: the browser side of an AI-run interview, with no dependencies.
//
// One InterviewClient takes one candidate through one interview: it opens the gateway's
// signaling socket with the invitation token, gets the microphone (camera optional), offers a
// peer connection with the `oai-events` data channel, trickles its ICE candidates, applies the
// answer, plays the AI's audio, and reports transcript lines, connection state and errors as
// DOM events. When the network drops it reconnects to the same interview with a new socket and a
// new peer connection (the gateway keeps the session for a grace period).
//
// In observer mode (`role: "observer"`, for an interviewer's or observer's token) it watches a
// live interview instead: the interview's state and transcript, and optionally both voices over
// a receive-only peer connection; it never opens a device and never sends media.
//
// Protocol: docs/signaling.md. API and example: docs/browser-client.md.

/** The Realtime data channel's label; the AI's events flow on it. */
export const EVENTS_CHANNEL = "oai-events";

/** The voices an observer hears, in the order of its listen-in peer connection's m-lines. */
export const VOICES = Object.freeze(["candidate", "interviewer"]);

/** What a client joins as: the candidate takes the interview, an observer watches it. */
export const ROLES = Object.freeze(["candidate", "observer"]);

/** States a client goes through; `ended` and `failed` are final. */
export const STATES = Object.freeze([
  "idle",
  "connecting",
  "connected",
  "reconnecting",
  "ended",
  "failed",
]);

/** Error codes after which trying again cannot help: the invitation or the interview is over. */
const FINAL_CODES = new Set([
  "token_missing",
  "token_invalid",
  "token_expired",
  "wrong_interview",
  "interview_ended",
  "interview_not_found",
  "invitation_used",
  "token_not_yet_valid",
  "wrong_audience",
  "role_not_allowed",
  "interview_in_progress",
  "interview_not_live",
  "origin_not_allowed",
  "microphone_denied",
  "microphone_missing",
  "microphone_busy",
  "media_unavailable",
]);

/**
 * Refusals that close the socket but use nothing up and pass by themselves (the gateway's
 * database slow or away for a moment, no worker free yet): connecting tries again, with the
 * same backoff and within the same `reconnectAttempts` as after a network loss.
 */
const TRANSIENT_REFUSALS = new Set(["database_unavailable", "worker_unavailable"]);

/** Errors about one trickled candidate: the connection may well succeed without it. */
const CANDIDATE_ERRORS = new Set(["bad_candidate", "unknown_mline", "candidate_refused"]);

/** An observer's listen-in offer refused: it watches on without the voices (no retry helps). */
const LISTEN_REFUSALS = new Set(["listen_unavailable", "bad_sdp"]);

/** An error with a stable `code` (the gateway's signaling codes, plus the client's own). */
export class InterviewError extends Error {
  constructor(code, message, { fatal = true } = {}) {
    super(message);
    this.name = "InterviewError";
    this.code = code;
    this.fatal = fatal;
  }
}

/** The signaling URL of an interview on the gateway that served `base` (default: this page). */
export function signalUrlFor(interviewId, base = globalThis.location?.href) {
  const url = new URL(`/v1/interviews/${encodeURIComponent(interviewId)}/signal`, base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * The signaling message for one `icecandidate` event's `candidate`: null (gathering is over)
 * is `end-of-candidates`; an empty `candidate` string with its `sdpMid` ends that m-line only
 * (Firefox sends one per m-line, and more candidates for other m-lines may follow).
 */
export function candidateMessage(candidate) {
  if (!candidate) return { type: "end-of-candidates" };
  const { sdpMid = null, sdpMLineIndex = null } = candidate;
  return { type: "candidate", candidate: candidate.candidate ?? "", sdpMid, sdpMLineIndex };
}

/**
 * Ask for the microphone (and the camera if `video`); rejects with an InterviewError whose code
 * says what the candidate can do about it: microphone_denied, microphone_missing,
 * microphone_busy or media_unavailable (no mediaDevices: the page is not on HTTPS).
 */
export async function openMedia({ video = false } = {}) {
  if (!globalThis.navigator?.mediaDevices?.getUserMedia) {
    throw new InterviewError(
      "media_unavailable",
      "This browser cannot use a microphone here; the page must be opened over HTTPS.",
    );
  }
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (err) {
    throw mediaError(err);
  }
}

function mediaError(err) {
  const name = err?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new InterviewError("microphone_denied", "Access to the microphone was denied.");
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return new InterviewError("microphone_missing", "No microphone was found.");
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return new InterviewError("microphone_busy", "The microphone is in use by another program.");
  }
  return new InterviewError("media_unavailable", `The microphone could not be opened (${name}).`);
}

/**
 * One candidate's interview, or (`role: "observer"`) one observer's view of it.
 *
 * Events (all CustomEvents, data in `event.detail`):
 * - `statechange` {state, reason}: see STATES (for an observer: its own watching);
 * - `transcript` {id, role, text, final, at}: a line, repeated with growing text while spoken,
 *   once more with `final: true`; `role` is "candidate" or "interviewer", `at` a Date;
 * - `error` {code, message, fatal}: from the gateway, the media or the connection;
 * - `realtime` {event}: each Realtime event received on the data channel (candidate only);
 * - `remotestream` {stream, voice}: audio arrived and plays: the AI's (voice "interviewer"), or
 *   for an observer each of VOICES;
 * - `interviewstate` {state, reason}: observer only, the interview's state as the gateway says.
 */
export class InterviewClient extends EventTarget {
  #signalUrl;
  #token;
  #options;
  #state = "idle";
  #mode = null;
  #stream = null;
  #ownsStream = false;
  #remoteStream = null;
  #audio = null;
  #observing = false;
  #voices = {}; // observer: voice -> {stream, audio}
  #interviewState = null;
  #muted = false;
  #link = null; // the current {ws, pc, channel, ...}: one socket and one peer connection
  #partials = new Map(); // item id -> text spoken so far
  #finals = new Set(); // ids of the final lines reported: a rejoin is told them again
  #generation = 0; // bumped per link, so callbacks of a replaced link do nothing
  #secretKey; // where the session's reconnect secret is kept (sessionStorage), per interview

  /**
   * @param {object} options
   * @param {string} options.signalUrl ws(s) URL of /v1/interviews/{id}/signal (see signalUrlFor)
   * @param {string} options.token the candidate's invitation token
   * @param {RTCIceServer[]} [options.iceServers] STUN/TURN servers besides those the gateway
   *   hands out in `welcome` (default: none)
   * @param {boolean} [options.video] also send the camera (default: false)
   * @param {MediaStream} [options.stream] media to send, if already opened (see openMedia)
   * @param {HTMLAudioElement} [options.audioElement] where to play the AI (default: a new one)
   * @param {number} [options.reconnectAttempts] tries after a network loss (default: 6)
   * @param {number} [options.reconnectDelayMs] first pause between tries, doubled each time
   * @param {number} [options.answerTimeoutMs] how long to wait for the gateway's answer
   * @param {Storage|null} [options.storage] where the session's reconnect secret is kept, so
   *   that a reload rejoins (default: sessionStorage, one per tab; null: nowhere)
   * @param {string} [options.role] "candidate" (default) or "observer": watch the interview
   *   with an interviewer's or observer's token, read-only
   * @param {boolean} [options.listen] observer: also hear both voices (relay mode only)
   * @param {{candidate?: HTMLAudioElement, interviewer?: HTMLAudioElement}} [options.audioElements]
   *   observer: where each voice plays (default: a new Audio() each)
   */
  constructor(options) {
    super();
    if (!options?.signalUrl || !options?.token) {
      throw new TypeError("InterviewClient needs a signalUrl and a token");
    }
    if (options.role !== undefined && !ROLES.includes(options.role)) {
      throw new TypeError(`InterviewClient's role is one of ${ROLES.join(", ")}`);
    }
    this.#observing = options.role === "observer";
    this.#signalUrl = options.signalUrl;
    this.#token = options.token;
    this.#options = {
      iceServers: [],
      video: false,
      reconnectAttempts: 6,
      reconnectDelayMs: 500,
      answerTimeoutMs: 20000,
      listen: false,
      audioElements: {},
      ...options,
    };
    this.#stream = options.stream ?? null;
    this.#audio = options.audioElement ?? null;
    this.#secretKey = `interview-reconnect:${this.#signalUrl}`;
  }

  /** The reconnect secret of this interview's live session, as the last welcome gave it. */
  get #secret() {
    return this.#storage?.getItem(this.#secretKey) ?? null;
  }

  set #secret(secret) {
    if (secret) this.#storage?.setItem(this.#secretKey, secret);
    else this.#storage?.removeItem(this.#secretKey);
  }

  get #storage() {
    if (this.#observing) return null; // an observer has no session of its own to rejoin
    return this.#options.storage === undefined ? (globalThis.sessionStorage ?? null) : this.#options.storage;
  }

  get state() {
    return this.#state;
  }

  /** "relay" or "proxy" once the gateway answered; null before. */
  get mode() {
    return this.#mode;
  }

  get localStream() {
    return this.#stream;
  }

  get remoteStream() {
    return this.#remoteStream;
  }

  /** "candidate" or "observer": what this client joined as. */
  get role() {
    return this.#observing ? "observer" : "candidate";
  }

  /** Observer: each voice's MediaStream once it arrived ({candidate, interviewer}). */
  get remoteStreams() {
    return Object.fromEntries(Object.entries(this.#voices).map(([voice, { stream }]) => [voice, stream]));
  }

  /** Observer: the interview's last state as the gateway told it ({state, reason}), or null. */
  get interviewState() {
    return this.#interviewState;
  }

  /** The current RTCPeerConnection (a new one after each reconnect), or null. */
  get peerConnection() {
    return this.#link?.pc ?? null;
  }

  get muted() {
    return this.#muted;
  }

  /** Mute or unmute the microphone; the connection stays up (silence is sent). */
  setMuted(muted) {
    this.#muted = Boolean(muted);
    for (const track of this.#stream?.getAudioTracks() ?? []) track.enabled = !this.#muted;
  }

  /**
   * Open the media (unless given), connect, and resolve once the peer connection is up.
   * Rejects with an InterviewError when the interview cannot start; the state is then `failed`.
   */
  async start() {
    if (this.#state !== "idle") throw new InterviewError("already_started", "start() runs once");
    this.#setState("connecting");
    try {
      if (this.#observing) {
        await this.#establish(false); // an observer opens no device
        return;
      }
      if (!this.#stream) {
        this.#stream = await openMedia({ video: this.#options.video });
        this.#ownsStream = true;
      }
      this.setMuted(this.#muted);
      await this.#establish(false);
    } catch (err) {
      const error = asInterviewError(err);
      this.#fail(error);
      throw error;
    }
  }

  /** End the interview for good (an observer: stop watching): say bye, close everything. */
  async end(reason = this.#observing ? "observer_left" : "candidate_ended") {
    if (this.#state === "ended" || this.#state === "failed") return;
    const link = this.#link;
    this.#setState("ended", reason); // first: the closing socket must not look like a loss
    this.#secret = null; // ended for good: nothing to rejoin
    if (link?.ws.readyState === WebSocket.OPEN) {
      link.ws.send(JSON.stringify({ type: "bye", reason }));
      await Promise.race([link.closed, delay(2000)]);
    }
    this.#teardown();
  }

  /** The inbound-rtp stats of the AI's audio (packets, bytes, levels), or null before any. */
  async inboundAudioStats() {
    const pc = this.peerConnection;
    if (!pc) return null;
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type === "inbound-rtp" && report.kind === "audio") return inboundFigures(report);
    }
    return null;
  }

  /**
   * Observer: each voice's inbound-rtp stats, as inboundAudioStats gives them
   * ({candidate, interviewer}, each null before its audio), or null without a listen-in peer.
   */
  async listenStats() {
    const link = this.#link;
    if (!this.#observing || !link?.pc || !link.voices) return null;
    const stats = await link.pc.getStats();
    const result = Object.fromEntries(VOICES.map((voice) => [voice, null]));
    for (const report of stats.values()) {
      if (report.type !== "inbound-rtp" || report.kind !== "audio") continue;
      const voice = link.voices.find(({ transceiver }) => transceiver.mid === report.mid)?.voice;
      if (voice) result[voice] = inboundFigures(report);
    }
    return result;
  }

  // --- connecting -----------------------------------------------------------------------------

  /** Connect, retrying transient failures; the first try of a reconnect already says so. */
  async #establish(reconnect) {
    const { reconnectAttempts, reconnectDelayMs } = this.#options;
    let pause = reconnectDelayMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#connect(reconnect || attempt > 0);
        return;
      } catch (err) {
        let error = asInterviewError(err);
        this.#closeLink();
        if (error.code === "signaling_unreachable") error = await this.#whyUnreachable(error);
        const passes = TRANSIENT_REFUSALS.has(error.code);
        if ((error.fatal && !passes) || FINAL_CODES.has(error.code) || attempt >= reconnectAttempts) {
          throw error;
        }
        if (this.#state === "ended") return;
        this.#emit("error", { code: error.code, message: error.message, fatal: false });
        await delay(pause);
        pause = Math.min(pause * 2, 4000);
        if (this.#state === "ended") return;
      }
    }
  }

  /**
   * A WebSocket that did not open says nothing of why. When the gateway is on another origin
   * and still answers HTTP (an opaque no-cors request succeeds), it refused this page's socket:
   * its origin is not on the gateway's allowlist (a 403 at the upgrade). Retrying cannot help.
   */
  async #whyUnreachable(error) {
    const http = new URL(this.#signalUrl);
    http.protocol = http.protocol === "wss:" ? "https:" : "http:";
    if (http.origin === globalThis.location?.origin) return error;
    try {
      await fetch(http.href, { mode: "no-cors", cache: "no-store" });
    } catch {
      return error; // truly unreachable: the network, or the gateway is down
    }
    return new InterviewError(
      "origin_not_allowed",
      `the interview server refused connections from this page (${globalThis.location?.origin}); its CORS allowlist must name this origin`,
    );
  }

  /** One socket and one peer connection, up to `connected` (an observer's: up to welcome). */
  async #connect(reconnect) {
    const generation = ++this.#generation;
    const link = this.#openLink(generation);
    this.#link = link;
    await link.opened;
    const secret = this.#secret;
    const role = this.#observing ? { role: "observer" } : {};
    link.ws.send(JSON.stringify({ type: "hello", token: this.#token, ...role, ...(secret ? { reconnect_secret: secret } : {}) }));
    const welcome = await link.next("welcome");
    this.#secret = welcome.reconnect_secret; // what a later socket (or a reloaded page) presents
    // The gateway pings every ping_interval; this much silence is a dead path (signaling.md).
    link.silenceMs = (welcome.silence_timeout ?? 1.5 * (welcome.ping_interval ?? 10)) * 1000;
    this.#watchLiveness(link);
    // The gateway's servers (a TURN relay with credentials minted for this session) first,
    // then the page's own.
    link.iceServers = [...(welcome.ice_servers ?? []), ...this.#options.iceServers];
    if (this.#observing) {
      // Watching starts with the welcome: the state and the lines so far follow it.
      link.up = true;
      this.#setState("connected");
      if (this.#options.listen) this.#listenIn(link, reconnect);
      return;
    }

    const pc = new RTCPeerConnection({ iceServers: link.iceServers });
    link.pc = pc;
    for (const track of this.#stream.getTracks()) pc.addTrack(track, this.#stream);
    link.channel = pc.createDataChannel(EVENTS_CHANNEL);
    link.channel.onmessage = (msg) => this.#onRealtime(msg.data);
    pc.ontrack = (ev) => this.#onTrack(ev);
    await this.#negotiate(link, generation, reconnect);
    link.up = true;
    this.#setState("connected");
  }

  /**
   * Observer: once the interview is `connected`, a receive-only peer connection with one audio
   * m-line per voice. A refused offer (proxy mode, say) leaves it watching without the voices;
   * a peer that fails later is a network loss like the candidate's.
   */
  async #listenIn(link, reconnect) {
    const generation = this.#generation;
    try {
      await Promise.race([link.live, link.failed]);
      if (generation !== this.#generation) return;
      const pc = new RTCPeerConnection({ iceServers: link.iceServers });
      link.pc = pc;
      link.voices = VOICES.map((voice) => ({ voice, transceiver: pc.addTransceiver("audio", { direction: "recvonly" }) }));
      pc.ontrack = (ev) => this.#onVoice(link, ev);
      await this.#negotiate(link, generation, reconnect);
    } catch (err) {
      if (generation !== this.#generation) return;
      const error = asInterviewError(err);
      this.#emit("error", { code: error.code, message: error.message, fatal: false });
      if (!LISTEN_REFUSALS.has(error.code)) this.#lost("media_lost");
    }
  }

  /** Offer `link.pc`, trickle its candidates, apply the answer, wait for the media path. */
  async #negotiate(link, generation, reconnect) {
    const pc = link.pc;
    const connected = new Promise((resolve, reject) => {
      pc.onconnectionstatechange = () => {
        if (generation !== this.#generation) return;
        const state = pc.connectionState;
        if (state === "connected") resolve();
        if (state === "failed") reject(new InterviewError("peer_failed", "no media path", { fatal: false }));
        this.#onPeerState(link, state);
      };
    });
    connected.catch(() => {}); // observed below; a late failure is handled by #onPeerState
    // Candidates found before the offer is on its way wait for it: the gateway wants it first.
    const pending = [];
    let offerSent = false;
    const sendCandidate = (candidate) => link.send(candidateMessage(candidate));
    pc.onicecandidate = (ev) => (offerSent ? sendCandidate(ev.candidate) : pending.push(ev.candidate));

    const refused = new Promise((_, reject) => (link.refuseOffer = reject));
    refused.catch(() => {});
    await pc.setLocalDescription(await pc.createOffer());
    link.send({ type: "offer", sdp: pc.localDescription.sdp, ...(reconnect ? { reconnect: true } : {}) });
    offerSent = true;
    pending.splice(0).forEach(sendCandidate);

    const answered = Promise.race([link.next("answer"), refused]);
    const answer = await withTimeout(answered, this.#options.answerTimeoutMs, "answer_timeout");
    link.refuseOffer = null;
    this.#mode = answer.mode;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await withTimeout(Promise.race([connected, link.failed]), this.#options.answerTimeoutMs, "connect_timeout");
  }

  /** A WebSocket with promises for its opening, its closing and the next message of a type. */
  #openLink(generation) {
    const ws = new WebSocket(this.#signalUrl);
    const link = { ws, pc: null, channel: null, up: false, lastHeard: Date.now(), silenceMs: 15000, timers: [] };
    link.live = new Promise((resolve) => (link.isLive = resolve)); // observer: the interview is connected
    const waiters = new Map(); // message type -> resolve
    let failLink;
    link.failed = new Promise((_, reject) => (failLink = reject));
    link.failed.catch(() => {});
    link.opened = new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new InterviewError("signaling_unreachable", "cannot reach the interview server", { fatal: false }));
    });
    link.opened.catch(() => {});
    link.closed = new Promise((resolve) => {
      ws.onclose = (ev) => {
        resolve();
        const error = new InterviewError("signaling_closed", `connection closed (${ev.code})`, { fatal: false });
        failLink(error);
        if (generation === this.#generation) this.#onSocketClosed(link);
      };
    });
    link.send = (msg) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    };
    link.next = (type) =>
      Promise.race([new Promise((resolve) => waiters.set(type, resolve)), link.failed]);
    ws.onmessage = (ev) => {
      if (generation !== this.#generation) return;
      link.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      const waiter = waiters.get(msg.type);
      if (waiter) {
        waiters.delete(msg.type);
        waiter(msg);
      }
      this.#onSignal(link, msg, failLink);
    };
    return link;
  }

  #onSignal(link, msg, failLink) {
    switch (msg.type) {
      case "ping":
        link.send({ type: "pong", id: msg.id });
        break;
      case "transcript":
        this.#onTranscript(msg);
        break;
      case "state":
        if (this.#observing) {
          this.#interviewState = { state: msg.state, reason: msg.detail?.reason ?? null };
          if (msg.state === "connected") link.isLive();
          this.#emit("interviewstate", this.#interviewState);
          break;
        }
        // A failure is an error too: the page must say what happened (its reason is the code).
        if (msg.state === "failed") {
          const reason = msg.detail?.reason ?? "failed";
          this.#fail(new InterviewError(reason, `the interview failed (${reason})`));
        } else if (msg.state === "ended") {
          this.#finish("ended", msg.detail?.reason ?? "ended");
        }
        break;
      case "error": {
        const fatal = Boolean(msg.fatal);
        const error = new InterviewError(msg.code, msg.message, { fatal });
        // A refused offer spoils this attempt (#establish reports it); a refused candidate does not.
        if (fatal || (!link.up && !CANDIDATE_ERRORS.has(msg.code))) failLink(error);
        else if (link.refuseOffer && !CANDIDATE_ERRORS.has(msg.code)) link.refuseOffer(error); // an observer's listen-in
        else if (msg.code === "listen_lost") this.#lost("media_lost"); // the gateway gave up on our peer
        else this.#emit("error", { code: msg.code, message: msg.message, fatal });
        if (fatal && link.up) this.#fail(error);
        break;
      }
      case "bye":
        // The gateway ended the conversation (the interview is over, or another tab took over);
        // a server going away (shutdown) did not end the interview, it failed it.
        if (msg.reason === "shutdown") {
          this.#fail(new InterviewError("shutdown", "the interview server is shutting down"));
        } else {
          this.#finish("ended", msg.reason);
        }
        break;
      default:
        break;
    }
  }

  // --- incoming media and events --------------------------------------------------------------

  #onTrack(ev) {
    if (ev.track.kind !== "audio") return;
    const stream = ev.streams[0] ?? new MediaStream([ev.track]);
    this.#remoteStream = stream;
    this.#audio = play(stream, this.#audio);
    this.#emit("remotestream", { stream, voice: "interviewer" });
  }

  /** Observer: one voice arrived; each plays in its own element (one stream, one track). */
  #onVoice(link, ev) {
    const voice = link.voices.find(({ transceiver }) => transceiver === ev.transceiver)?.voice;
    if (!voice || ev.track.kind !== "audio") return;
    const stream = new MediaStream([ev.track]);
    const audio = play(stream, this.#voices[voice]?.audio ?? this.#options.audioElements[voice]);
    this.#voices[voice] = { stream, audio };
    this.#emit("remotestream", { stream, voice });
  }

  #onRealtime(data) {
    try {
      this.#emit("realtime", { event: JSON.parse(data) });
    } catch {
      // not JSON: not a Realtime event, nothing to report
    }
  }

  #onTranscript(msg) {
    const id = msg.item_id ?? msg.event_id;
    if (msg.final && id != null) {
      if (this.#finals.has(id)) return; // the interview so far, told again on a rejoin
      this.#finals.add(id);
    }
    let text = msg.text;
    if (msg.final) {
      this.#partials.delete(id);
    } else {
      text = (this.#partials.get(id) ?? "") + msg.text;
      this.#partials.set(id, text);
    }
    const at = msg.at ? new Date(msg.at) : new Date();
    this.#emit("transcript", { id, role: msg.role, text: text.trim(), final: Boolean(msg.final), at });
  }

  // --- losing and regaining the connection ----------------------------------------------------

  #onSocketClosed(link) {
    if (link.up) this.#lost("signaling_lost");
  }

  #onPeerState(link, state) {
    if (!link.up) return;
    clearTimeout(link.disconnectTimer);
    if (state === "failed") this.#lost("media_lost");
    // "disconnected" often heals by itself within a few seconds; give ICE that chance.
    if (state === "disconnected") link.disconnectTimer = setTimeout(() => this.#lost("media_lost"), 3000);
  }

  /**
   * The gateway pings every ping_interval, so a socket silent for welcome's silence_timeout
   * (1.5 intervals) is dead: reconnect then, well within the gateway's grace (signaling.md,
   * "Liveness and grace"). Checked six times per silence_timeout (at most every second).
   */
  #watchLiveness(link) {
    const timer = setInterval(() => {
      if (Date.now() - link.lastHeard > link.silenceMs) {
        clearInterval(timer);
        if (link.up) this.#lost("signaling_silent");
        else link.ws.close();
      }
    }, Math.min(1000, link.silenceMs / 6));
    link.timers.push(timer);
  }

  async #lost(reason) {
    if (this.#state !== "connected") return;
    this.#setState("reconnecting", reason);
    this.#closeLink();
    try {
      await this.#establish(true);
    } catch (err) {
      const error = asInterviewError(err);
      if (this.#state !== "reconnecting") return;
      // Out of tries on a transient error: say what the candidate experienced, a lost connection.
      this.#fail(FINAL_CODES.has(error.code) ? error : new InterviewError("connection_lost", error.message));
    }
  }

  // --- ending ---------------------------------------------------------------------------------

  #finish(state, reason) {
    if (this.#state === "ended" || this.#state === "failed") return;
    // An interview that is over for this page has no session left to rejoin, except when
    // another socket holding the secret took it over (it keeps the secret it shares).
    if (reason !== "replaced") this.#secret = null;
    this.#setState(state, reason);
    this.#teardown();
  }

  #fail(error) {
    if (this.#state === "ended" || this.#state === "failed") return;
    this.#emit("error", { code: error.code, message: error.message, fatal: true });
    this.#finish("failed", error.code);
  }

  #closeLink() {
    const link = this.#link;
    if (!link) return;
    this.#link = null;
    this.#generation++;
    link.timers.forEach(clearInterval);
    clearTimeout(link.disconnectTimer);
    link.pc?.close();
    if (link.ws.readyState <= WebSocket.OPEN) link.ws.close(1000);
  }

  #teardown() {
    this.#closeLink();
    if (this.#ownsStream) this.#stream?.getTracks().forEach((t) => t.stop());
    if (this.#audio) this.#audio.srcObject = null;
    for (const { audio } of Object.values(this.#voices)) audio.srcObject = null;
  }

  #setState(state, reason = null) {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit("statechange", { state, reason });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** Play `stream` in `audio` (a new autoplaying element if none); returns the element. */
function play(stream, audio) {
  const element = audio ?? Object.assign(new Audio(), { autoplay: true });
  element.srcObject = stream;
  element.play().catch(() => {}); // autoplay may wait for a click; the element keeps trying
  return element;
}

/** What inboundAudioStats reports of one inbound-rtp audio report. */
function inboundFigures(report) {
  return {
    packetsReceived: report.packetsReceived ?? 0,
    packetsLost: report.packetsLost ?? 0,
    bytesReceived: report.bytesReceived ?? 0,
    jitter: report.jitter ?? 0,
    audioLevel: report.audioLevel ?? 0,
    totalAudioEnergy: report.totalAudioEnergy ?? 0,
    totalSamplesReceived: report.totalSamplesReceived ?? 0,
  };
}

function asInterviewError(err) {
  if (err instanceof InterviewError) return err;
  return new InterviewError("client_error", String(err?.message ?? err), { fatal: false });
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout(promise, ms, code) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new InterviewError(code, `no reply within ${ms} ms`, { fatal: false })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
