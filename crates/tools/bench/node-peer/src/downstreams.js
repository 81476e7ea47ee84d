// The downstream services, called over mutual TLS with the web BFF's
// certificate from the stack's trust directory. Each service's certificate
// names the service (`catalog`, ...), not its address, so the TLS server
// name is the service's name.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CatalogService } from "./gen/tailor/catalog/v1/catalog_pb.js";
import { InventoryService } from "./gen/tailor/inventory/v1/inventory_pb.js";
import { ReviewsService } from "./gen/tailor/reviews/v1/reviews_pb.js";

/** The peer presents the web BFF's certificate: the services admit it. */
const CALLER = "web-bff";

function transport(service, address, tls) {
  // "127.0.0.1:50051" or a URL; any scheme given is replaced by https.
  const authority = address.includes("://") ? address.split("://")[1] : address;
  return createGrpcTransport({
    baseUrl: `https://${authority}`,
    nodeOptions: { ...tls, servername: service },
  });
}

/**
 * Clients of catalog, inventory and reviews at `addresses`
 * (`{ catalog, inventory, reviews }`), with the credentials in `trustDir`.
 */
export function downstreams(trustDir, addresses) {
  const tls = {
    ca: readFileSync(join(trustDir, "ca.crt")),
    cert: readFileSync(join(trustDir, `${CALLER}.crt`)),
    key: readFileSync(join(trustDir, `${CALLER}.key`)),
  };
  return {
    catalog: createClient(CatalogService, transport("catalog", addresses.catalog, tls)),
    inventory: createClient(InventoryService, transport("inventory", addresses.inventory, tls)),
    reviews: createClient(ReviewsService, transport("reviews", addresses.reviews, tls)),
  };
}
