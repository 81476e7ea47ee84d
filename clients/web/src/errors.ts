// The one visible error area: every failed call ends up here.
import { Code, ConnectError } from "@connectrpc/connect";
import { byTestId } from "./dom.js";
import { traceIdOf } from "./trace.js";

const area = byTestId("error-area");
const message = byTestId("error-message");
const trace = byTestId("error-trace");
byTestId("error-dismiss").addEventListener("click", clearError);

/** "PermissionDenied" becomes "PERMISSION_DENIED", the name gRPC uses. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/**
 * Shows what failed, with the gRPC status code and message, and the trace id
 * the call sent: quoted in a report, it finds the call in every server.
 */
export function showError(what: string, cause: unknown): void {
  const error = ConnectError.from(cause);
  message.textContent = `${what}: ${error.rawMessage} (${codeName(error.code)}, code ${error.code})`;
  area.dataset.code = String(error.code);
  const traceId = traceIdOf(error);
  trace.textContent = traceId ? `Trace ${traceId}` : "";
  trace.hidden = !traceId;
  if (traceId) area.dataset.traceId = traceId;
  else delete area.dataset.traceId;
  area.hidden = false;
}

export function clearError(): void {
  message.textContent = "";
  trace.textContent = "";
  trace.hidden = true;
  delete area.dataset.code;
  delete area.dataset.traceId;
  area.hidden = true;
}

/** True when the error is the status code given. */
export function hasCode(cause: unknown, code: Code): boolean {
  return ConnectError.from(cause).code === code;
}
