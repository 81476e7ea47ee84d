// The web BFF's gRPC-web endpoint as a third-party client sees it: the official
// grpc-web runtime, in binary (application/grpc-web+proto) and text
// (application/grpc-web-text) format, against a stack started for this file.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { OrderStatus, ShopService } from "../src/gen/tailor/web/v1/shop_pb.js";
import { SessionService } from "../src/gen/tailor/web/v1/session_pb.js";
import { GrpcWebClient } from "./support/grpc-web-client.mjs";
import { bearerToken, startStack } from "./support/stack.mjs";

const OK = 0;
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const UNAUTHENTICATED = 16;
const FULFILMENT_STEP_MS = 700;
// The catalogue of the stack started for this file (`--products 300` in support/stack.mjs).
const PRODUCTS = 300;

let stack;
let token;

before(async () => {
  stack = await startStack();
  token = bearerToken("alice");
}, { timeout: 180_000 });

after(async () => {
  await stack?.stop();
});

/** What a failed expectation should show about the call. */
function describeResult(result) {
  return JSON.stringify(
    {
      error: result.error && { code: result.error.code, message: result.error.message },
      status: result.status && { code: result.status.code, details: result.status.details },
      headers: result.headers,
      messages: result.messages.length,
    },
    null,
    2,
  );
}

function assertOk(result, call) {
  assert.equal(result.error, undefined, `${call} failed:\n${describeResult(result)}`);
  assert.equal(result.status?.code, OK, `${call} should end with grpc-status 0 in its trailers:\n${describeResult(result)}`);
}

function assertStatus(result, code, call) {
  assert.equal(result.error?.code, code, `${call} should fail with status ${code}:\n${describeResult(result)}`);
  assert.ok(result.error.message, `${call} should carry a grpc-message`);
}

async function placeOrder(client, productId) {
  const result = await client.unary(
    ShopService.method.placeOrder,
    { idempotencyKey: crypto.randomUUID(), lines: [{ productId, quantity: 1 }] },
    { authorization: `Bearer ${token}` },
  );
  assertOk(result, "PlaceOrder with a bearer token");
  const order = result.response.order;
  assert.ok(order?.id, "PlaceOrder should answer with the order and its id");
  return order;
}

function assertAdvancing(statuses, call) {
  for (let i = 1; i < statuses.length; i++) {
    assert.ok(
      statuses[i] > statuses[i - 1],
      `${call} statuses should only move forward, got ${statuses.map((s) => OrderStatus[s]).join(" → ")}`,
    );
  }
}

for (const format of ["binary", "text"]) {
  describe(`grpc-web ${format} format`, () => {
    let client;
    before(() => {
      client = new GrpcWebClient(`http://${stack.webBffAddress}`, format);
    });

    test("ListProducts with page_size 3 answers 3 cards and grpc-status 0", async () => {
      const result = await client.unary(ShopService.method.listProducts, { pageSize: 3 });
      assertOk(result, "ListProducts");
      assert.equal(result.response.products.length, 3, "page_size 3 should give 3 cards");
      assert.equal(result.response.totalSize, PRODUCTS, `total_size should count all ${PRODUCTS} products, not the page`);
      assert.notEqual(result.response.nextPageToken, "", `a first page of 3 out of ${PRODUCTS} should have a next_page_token`);
      for (const card of result.response.products) {
        assert.match(card.id, /^prod-\d{6}$/, "every card should have a product id");
        assert.ok(card.title, `card ${card.id} should have a title`);
      }
    });

    test("GetProductPage answers the product asked for", async () => {
      const result = await client.unary(ShopService.method.getProductPage, { productId: "prod-000042" });
      assertOk(result, "GetProductPage prod-000042");
      assert.equal(result.response.product?.id, "prod-000042", "the page should be for prod-000042");
      assert.ok(result.response.product.title, "the product should have a title");
      assert.ok(result.response.product.price?.display, "the product should have a price");
    });

    test("GetProductPage of an unknown product is NOT_FOUND", async () => {
      const result = await client.unary(ShopService.method.getProductPage, { productId: "prod-999999" });
      assertStatus(result, NOT_FOUND, "GetProductPage prod-999999");
      assert.equal(result.response, undefined, "a failed call should have no response message");
    });

    test("ListProducts with page_size -1 is INVALID_ARGUMENT", async () => {
      const result = await client.unary(ShopService.method.listProducts, { pageSize: -1 });
      assertStatus(result, INVALID_ARGUMENT, "ListProducts page_size -1");
    });

    test("PlaceOrder without credentials is UNAUTHENTICATED", async () => {
      const result = await client.unary(ShopService.method.placeOrder, {
        idempotencyKey: crypto.randomUUID(),
        lines: [{ productId: "prod-000042", quantity: 1 }],
      });
      assertStatus(result, UNAUTHENTICATED, "PlaceOrder without credentials");
    });

    test("GetSession without a session cookie is UNAUTHENTICATED", async () => {
      const result = await client.unary(SessionService.method.getSession, {}, { "x-tailor-csrf": "1" });
      assertStatus(result, UNAUTHENTICATED, "GetSession without a cookie");
    });

    test("WatchOrder streams the order's statuses until it is delivered", { timeout: 60_000 }, async () => {
      const order = await placeOrder(client, "prod-000007");
      const result = await client.serverStreaming(
        ShopService.method.watchOrder,
        { orderId: order.id },
        { authorization: `Bearer ${token}` },
      );
      assertOk(result, "WatchOrder");
      const statuses = result.messages.map(({ message }) => message.order?.status);
      assert.ok(statuses.length >= 2, `WatchOrder should send at least two messages, got ${statuses.length}`);
      for (const { message } of result.messages) {
        assert.equal(message.order?.id, order.id, "every message should be about the order watched");
      }
      assertAdvancing(statuses, "WatchOrder");
      assert.equal(statuses.at(-1), OrderStatus.DELIVERED, "the stream should end with the order delivered");
      if (format === "text") {
        // The text format is read as it arrives: the messages must come one
        // status change apart, not all at once when the stream ends.
        const spread = result.messages.at(-1).at - result.messages[0].at;
        assert.ok(
          spread >= FULFILMENT_STEP_MS,
          `the first and last message should arrive at least ${FULFILMENT_STEP_MS} ms apart, not buffered together; were ${spread} ms apart`,
        );
      }
    });
  });
}
