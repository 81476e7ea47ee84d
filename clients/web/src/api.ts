// The two gRPC-web clients of the web BFF, and the config that says where it is.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { SessionService } from "./gen/tailor/web/v1/session_pb.js";
import { ShopService } from "./gen/tailor/web/v1/shop_pb.js";
import { traceContext } from "./trace.js";

export interface Api {
  shop: Client<typeof ShopService>;
  session: Client<typeof SessionService>;
}

/** Where the web BFF listens, as the server that serves this page says. */
export async function loadBffUrl(): Promise<string> {
  const response = await fetch("/config.json");
  if (!response.ok) {
    throw new Error(`GET /config.json answered HTTP ${response.status}`);
  }
  const config: unknown = await response.json();
  if (
    typeof config !== "object" ||
    config === null ||
    !("webBffUrl" in config) ||
    typeof config.webBffUrl !== "string"
  ) {
    throw new Error("/config.json has no webBffUrl");
  }
  return config.webBffUrl;
}

// The BFF accepts the session cookie only together with this header, which a
// cross-site form cannot send. It is harmless on anonymous calls, so every
// call carries it.
const csrfHeader: Interceptor = (next) => (request) => {
  request.header.set("x-tailor-csrf", "1");
  return next(request);
};

export function createApi(webBffUrl: string): Api {
  const transport = createGrpcWebTransport({
    baseUrl: webBffUrl,
    // The BFF is on another port, so the session cookie only travels (and is
    // only stored from set-cookie) with credentials: "include".
    fetch: (input, init) => fetch(input, { ...init, credentials: "include" }),
    // Every call carries the trace of the user action it was made for.
    interceptors: [csrfHeader, traceContext],
  });
  return {
    shop: createClient(ShopService, transport),
    session: createClient(SessionService, transport),
  };
}
