// The one visible error area: every failed call ends up here.
import { Code, ConnectError } from "@connectrpc/connect";
import { byTestId } from "./dom.js";

const area = byTestId("error-area");
const message = byTestId("error-message");
byTestId("error-dismiss").addEventListener("click", clearError);

/** "PermissionDenied" becomes "PERMISSION_DENIED", the name gRPC uses. */
function codeName(code: Code): string {
  return Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Shows what failed, with the gRPC status code and message. */
export function showError(what: string, cause: unknown): void {
  const error = ConnectError.from(cause);
  message.textContent = `${what}: ${error.rawMessage} (${codeName(error.code)}, code ${error.code})`;
  area.dataset.code = String(error.code);
  area.hidden = false;
}

export function clearError(): void {
  message.textContent = "";
  delete area.dataset.code;
  area.hidden = true;
}

/** True when the error is the status code given. */
export function hasCode(cause: unknown, code: Code): boolean {
  return ConnectError.from(cause).code === code;
}
