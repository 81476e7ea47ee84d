// One trace per user action. Every click, form submission, key press and
// address change starts a new W3C trace: a fresh random trace id, sampled.
// Each gRPC-web call made for the action carries it in `traceparent` (with
// a span id of its own), so the web BFF continues that trace down to every
// store. A failed call remembers the trace id it sent, for the error area:
// a user who reports it lets an operator find the whole call.
import { ConnectError, type Interceptor } from "@connectrpc/connect";

/** W3C trace context version 00, sampled flag set. */
const VERSION = "00";
const SAMPLED = "01";
/** Where a failed call's trace id is kept on its error. */
const TRACE_ID_KEY = "x-tailor-trace-id";

function randomHex(bytes: number): string {
  const buffer = new Uint8Array(bytes);
  // An all-zero id is invalid; 2^-128 odds, but cheap to rule out.
  do {
    crypto.getRandomValues(buffer);
  } while (buffer.every((b) => b === 0));
  return Array.from(buffer, (b) => b.toString(16).padStart(2, "0")).join("");
}

let currentTraceId = randomHex(16);

/** Starts the trace of a new user action. */
export function startAction(): void {
  currentTraceId = randomHex(16);
}

/** Starts a new trace before the page's own handlers see each user action. */
export function traceUserActions(): void {
  for (const type of ["click", "submit", "keydown", "change"]) {
    window.addEventListener(type, startAction, { capture: true });
  }
  window.addEventListener("hashchange", startAction, { capture: true });
}

/** The trace id a failed call sent, if it was made by this app. */
export function traceIdOf(error: ConnectError): string | undefined {
  return error.metadata.get(TRACE_ID_KEY) ?? undefined;
}

function remember(cause: unknown, traceId: string): ConnectError {
  const error = ConnectError.from(cause);
  error.metadata.set(TRACE_ID_KEY, traceId);
  return error;
}

async function* rememberingStream<T>(messages: AsyncIterable<T>, traceId: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (cause) {
    throw remember(cause, traceId);
  }
}

/** Puts the current action's trace context on every call. */
export const traceContext: Interceptor = (next) => async (request) => {
  const traceId = currentTraceId;
  request.header.set("traceparent", `${VERSION}-${traceId}-${randomHex(8)}-${SAMPLED}`);
  try {
    const response = await next(request);
    if (response.stream) {
      return { ...response, message: rememberingStream(response.message, traceId) };
    }
    return response;
  } catch (cause) {
    throw remember(cause, traceId);
  }
};
