// The shop in a real browser: headless Chromium drives the built app (served by
// the launcher) against a stack started for this file, from the product list to
// an order whose status updates arrive live.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startStack, webDir } from "./support/stack.mjs";

const resultsDir = path.join(webDir, "test-results");
const STEP_TIMEOUT_MS = 60_000;
const STATUS_ORDER = ["PLACED", "CONFIRMED", "PACKED", "SHIPPED", "DELIVERED"];

let stack;
let browser;
let page;
const pageErrors = [];
const consoleErrors = [];

before(async () => {
  mkdirSync(resultsDir, { recursive: true });
  stack = await startStack();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
}, { timeout: 180_000 });

after(async () => {
  try {
    await browser?.close();
  } finally {
    await stack?.stop();
  }
});

/** One step of the walk through the shop; a failing step leaves a screenshot. */
function step(name, fn) {
  test(name, { timeout: STEP_TIMEOUT_MS }, async () => {
    try {
      await fn();
    } catch (error) {
      await page?.screenshot({ path: path.join(resultsDir, "failure.png"), fullPage: true }).catch(() => {});
      throw error;
    }
  });
}

const byTestId = (testid) => page.getByTestId(testid);

/** The list's total, as the app got it in ListProductsResponse.total_size. */
async function listTotal() {
  return Number(await byTestId("list-summary").getAttribute("data-total"));
}

let chosen; // the product the walk opens: { id, title }

step("the product list shows product cards and pages through them", async () => {
  await page.goto(stack.shopUrl);
  const cards = byTestId("product-card");
  await cards.first().waitFor();
  assert.equal(await listTotal(), 300, "the list should count all 300 products of the catalogue");
  const count = await cards.count();
  assert.ok(count > 1 && count <= 12, `the first page should show up to 12 cards, shows ${count}`);
  const firstId = await cards.first().getAttribute("data-product-id");

  await byTestId("next-page").click();
  await byTestId("page-number").filter({ hasText: "Page 2" }).waitFor();
  assert.notEqual(await cards.first().getAttribute("data-product-id"), firstId, "page 2 should show other products");

  await byTestId("previous-page").click();
  await byTestId("page-number").filter({ hasText: "Page 1" }).waitFor();
  assert.equal(await cards.first().getAttribute("data-product-id"), firstId, "back on page 1, the first card should be the same");
});

step("searching narrows the list", async () => {
  // A product with reviews, so that its page has some to show.
  const reviewed = page.locator('[data-testid="product-card"]:has([data-review-count]:not([data-review-count="0"]))').first();
  chosen = {
    id: await reviewed.getAttribute("data-product-id"),
    title: await reviewed.getByTestId("product-card-title").textContent(),
  };
  // Titles read "<brand> <material> <noun>, <size>, <colour>".
  const query = chosen.title.split(",")[0];
  await byTestId("search-input").fill(query);
  await byTestId("search-input").press("Enter");
  await byTestId("list-summary").filter({ hasText: "matching" }).waitFor();

  const total = await listTotal();
  assert.ok(total >= 1 && total < 300, `searching "${query}" should find fewer than 300 products but at least one, found ${total}`);
  const ids = await byTestId("product-card").evaluateAll((cards) => cards.map((card) => card.dataset.productId));
  assert.equal(ids.length, Math.min(total, 12), "the page should show the matches");
  assert.ok(ids.includes(chosen.id), `the results of "${query}" should include ${chosen.id}, got ${ids.join(", ")}`);
});

step("a product page shows the product, its stock and its reviews", async () => {
  await page.locator(`[data-testid="product-card"][data-product-id="${chosen.id}"]`).click();
  await byTestId("product-title").waitFor();
  assert.equal(await byTestId("product-title").textContent(), chosen.title, "the page should be the product clicked");
  assert.equal(new URL(page.url()).hash, `#/product/${chosen.id}`, "the address should name the product");
  assert.ok(await byTestId("product-price").textContent(), "the page should show a price");
  assert.ok(await byTestId("product-description").textContent(), "the page should show a description");

  assert.ok(await byTestId("availability").isVisible(), "the page should have an availability section");
  assert.ok(await byTestId("availability-summary").textContent(), "the availability section should say whether it is in stock");
  assert.match(await byTestId("available-units").textContent(), /^\d+ units available$/, "the page should show the units available");

  assert.ok(await byTestId("reviews").isVisible(), "the page should have a reviews section");
  assert.match(await byTestId("rating-summary").textContent(), /\(\d+ reviews\)/, "the reviews section should sum up the rating");
  const reviews = byTestId("review");
  assert.ok((await reviews.count()) >= 1, "the reviews section should list the product's reviews");
  assert.match(await reviews.first().getByTestId("review-rating").getAttribute("aria-label"), /^[1-5] of 5 stars$/, "a review should show its rating");
  assert.ok(await reviews.first().getByTestId("review-body").textContent(), "a review should show its text");

  assert.ok(await byTestId("order-button").isDisabled(), "ordering should need a signed-in user");
  assert.equal(await byTestId("order-hint").textContent(), "Sign in to order.", "the page should say why ordering is off");
});

step("signing in as demo enables ordering", async () => {
  await byTestId("username").fill("demo");
  await byTestId("password").fill("demo");
  await byTestId("sign-in-button").click();
  await byTestId("signed-in-as").waitFor();
  assert.match(await byTestId("signed-in-as").textContent(), /^Signed in as \S/, "the top bar should greet the user");
  assert.ok(await byTestId("order-button").isEnabled(), "the order button should work once signed in");
});

step("an order's status updates arrive live until it is delivered", async () => {
  await byTestId("order-button").click();
  await byTestId("order-id").waitFor();
  // The moment a second status is shown, the stream must still be open: the
  // updates arrive one by one, not all at the end.
  const stateAtSecondStatus = await page.waitForFunction(() => {
    const items = document.querySelectorAll('[data-testid="order-history-item"]');
    return items.length >= 2 && document.querySelector('[data-testid="order-panel"]').dataset.state;
  });
  assert.equal(await stateAtSecondStatus.jsonValue(), "watching", "the second status should be shown while the order is still being watched");

  await byTestId("order-final").waitFor({ timeout: 30_000 });
  const statuses = await byTestId("order-history-item").evaluateAll((items) => items.map((item) => item.dataset.status));
  assert.equal(statuses[0], "PLACED", `the first status should be PLACED, history: ${statuses.join(" → ")}`);
  assert.ok(statuses.length >= 2, `at least two statuses should have arrived, history: ${statuses.join(" → ")}`);
  const positions = statuses.map((status) => STATUS_ORDER.indexOf(status));
  assert.ok(
    positions.every((position, i) => position >= 0 && (i === 0 || position > positions[i - 1])),
    `the statuses should only move forward, history: ${statuses.join(" → ")}`,
  );
  assert.equal(statuses.at(-1), "DELIVERED", `the order should end delivered, history: ${statuses.join(" → ")}`);
  assert.equal(await byTestId("order-status").getAttribute("data-status"), "DELIVERED", "the status label should show the final state");
  assert.match(await byTestId("order-final").textContent(), /^Final state: \S/, "the panel should name the final state");
  assert.ok(await byTestId("error-area").isHidden(), `no error should be shown, shows: ${await byTestId("error-message").textContent()}`);

  await page.screenshot({ path: path.join(resultsDir, "shop.png"), fullPage: true });
});

step("the session survives a reload and ends with sign-out", async () => {
  await page.reload();
  await byTestId("signed-in-as").waitFor();

  await byTestId("sign-out-button").click();
  await byTestId("sign-in-form").waitFor();

  const sessionChecked = page.waitForResponse((response) => response.url().endsWith("/tailor.web.v1.SessionService/GetSession"));
  await page.reload();
  await sessionChecked;
  await byTestId("product-title").waitFor();
  assert.ok(await byTestId("sign-in-form").isVisible(), "after signing out, a reload should offer the sign-in form");
  assert.equal(await byTestId("signed-in-as").count(), 0, "after signing out, nobody should be signed in");
  assert.ok(await byTestId("error-area").isHidden(), `a signed-out visitor should see no error, shows: ${await byTestId("error-message").textContent()}`);
});

/** The trace id of a W3C `traceparent` the app sent: version 00, sampled. */
function sentTraceId(request) {
  const traceparent = request.headers()["traceparent"];
  const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(traceparent ?? "");
  assert.ok(match, `the call should carry a sampled W3C traceparent, sent ${traceparent}`);
  assert.notEqual(match[1], "0".repeat(32), "the trace id should not be all zeros");
  return match[1];
}

const productPageCall = (request) => request.url().endsWith("/tailor.web.v1.ShopService/GetProductPage") && request.method() === "POST";

let failedTraceId;

step("a failed call shows its status and the trace id it sent in the error area", async () => {
  const sent = page.waitForRequest(productPageCall);
  await page.goto(`${stack.shopUrl}#/product/prod-999999`);
  failedTraceId = sentTraceId(await sent);
  await byTestId("error-area").waitFor();
  assert.match(await byTestId("error-message").textContent(), /NOT_FOUND, code 5/, "the error should name the gRPC status");
  assert.equal(await byTestId("error-area").getAttribute("data-code"), "5", "the error area should carry the status code");
  assert.equal(await byTestId("error-trace").textContent(), `Trace ${failedTraceId}`, "the error area should show the trace id the call sent");
  assert.equal(await byTestId("error-area").getAttribute("data-trace-id"), failedTraceId);
});

step("each user action is a trace of its own", async () => {
  const sent = page.waitForRequest(productPageCall);
  await page.evaluate(() => {
    location.hash = "#/product/prod-999998";
  });
  const next = sentTraceId(await sent);
  assert.notEqual(next, failedTraceId, "a new action should start a new trace");
  await byTestId("error-trace").filter({ hasText: next }).waitFor();
  assert.equal(await byTestId("error-area").getAttribute("data-trace-id"), next, "the error area should show the latest failed call's trace");

  await byTestId("error-dismiss").click();
  assert.ok(await byTestId("error-area").isHidden(), "dismissing should hide the error area");
  assert.equal(await byTestId("error-trace").textContent(), "", "dismissing should clear the trace id");
});

step("with the reviews service down, a product page shows the rest and says what is missing", async () => {
  stack.kill("reviews");
  await page.goto(`${stack.shopUrl}#/product/${chosen.id}`);
  await byTestId("product-title").filter({ hasText: chosen.title }).waitFor();
  assert.match(await byTestId("degraded").textContent(), /Not available right now: .*reviews/, "the page should say the reviews are missing");
  assert.ok(await byTestId("reviews").isHidden(), "the page should leave the reviews section out");
  assert.ok(await byTestId("availability").isVisible(), "the page should still show availability");
  assert.ok(await byTestId("error-area").isHidden(), "a degraded page is not an error");
});

step("the page threw no errors", async () => {
  assert.deepEqual(pageErrors, [], "no uncaught exception should happen in the page");
  assert.deepEqual(consoleErrors, [], "the console should show no errors");
});
