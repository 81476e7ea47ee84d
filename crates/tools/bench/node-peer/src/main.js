// node-peer: serves tailor.web.v1.ShopService/GetProductPage over native
// gRPC (HTTP/2, plaintext) from the same contract and the same downstream
// services as the Rust web BFF, for the benchmark. The other web methods
// answer UNIMPLEMENTED.
//
// Flags (each also read from the environment variable in brackets):
//   --listen        (TAILOR_NODE_PEER_LISTEN, 127.0.0.1:8091; port 0 picks one)
//   --trust-dir     (TAILOR_TRUST_DIR, data/trust)
//   --catalog-addr  (TAILOR_CATALOG_ADDR, 127.0.0.1:50051)
//   --inventory-addr (TAILOR_INVENTORY_ADDR, 127.0.0.1:50052)
//   --reviews-addr  (TAILOR_REVIEWS_ADDR, 127.0.0.1:50053)

import http2 from "node:http2";
import { parseArgs } from "node:util";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ShopService } from "./gen/tailor/web/v1/shop_pb.js";
import { downstreams } from "./downstreams.js";
import { productPage } from "./page.js";

const FLAGS = {
  listen: ["TAILOR_NODE_PEER_LISTEN", "127.0.0.1:8091"],
  "trust-dir": ["TAILOR_TRUST_DIR", "data/trust"],
  "catalog-addr": ["TAILOR_CATALOG_ADDR", "127.0.0.1:50051"],
  "inventory-addr": ["TAILOR_INVENTORY_ADDR", "127.0.0.1:50052"],
  "reviews-addr": ["TAILOR_REVIEWS_ADDR", "127.0.0.1:50053"],
};

function config() {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(FLAGS).map((name) => [name, { type: "string" }])),
  });
  return Object.fromEntries(
    Object.entries(FLAGS).map(([name, [env, fallback]]) => [name, values[name] ?? process.env[env] ?? fallback]),
  );
}

/** "127.0.0.1:8091" or "[::1]:8091" → { host, port }. */
function hostPort(address) {
  const colon = address.lastIndexOf(":");
  if (colon < 0) throw new Error(`--listen ${address}: expected host:port`);
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(address.slice(colon + 1)) };
}

const flags = config();
const ds = downstreams(flags["trust-dir"], {
  catalog: flags["catalog-addr"],
  inventory: flags["inventory-addr"],
  reviews: flags["reviews-addr"],
});
const handler = connectNodeAdapter({
  grpc: true,
  grpcWeb: false,
  connect: false,
  routes: (router) => router.service(ShopService, { getProductPage: productPage(ds) }),
});
const server = http2.createServer(handler);
const { host, port } = hostPort(flags.listen);
server.listen(port, host, () => {
  const { address, port } = server.address();
  const shown = address.includes(":") ? `[${address}]` : address;
  console.log(`node-peer listening on ${shown}:${port}`);
});

function stop() {
  server.close(() => process.exit(0));
  // Open HTTP/2 sessions would keep close() waiting; a bench peer need not drain.
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
