// tailor.web.v1.ShopService/GetProductPage: the product (required), its
// stock, review summary, newest reviews and related products (optional),
// all five requested at once; an optional part that fails is left out and
// named in degraded_sections. The same calls and answers as the Rust web
// BFF (crates/bff/screens/src/page.rs, crates/bff/web-bff/src/shop.rs).

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { GetProductPageResponseSchema, ReviewsSectionSchema } from "./gen/tailor/web/v1/shop_pb.js";
import * as shape from "./shape.js";

const PAGE_REVIEWS = 5;
const PAGE_RELATED = 8;
const MAX_ID_CHARS = 64;

// Statuses about the request itself reach the client as the service said
// them; anything about the service's health becomes UNAVAILABLE naming it.
const PASSED_THROUGH = new Set([
  Code.NotFound,
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.AlreadyExists,
  Code.OutOfRange,
  Code.ResourceExhausted,
  Code.Aborted,
]);

function named(service, error) {
  const e = ConnectError.from(error);
  if (PASSED_THROUGH.has(e.code)) return new ConnectError(e.rawMessage, e.code);
  if (e.code === Code.DeadlineExceeded) return new ConnectError("deadline exceeded", e.code);
  if (e.code === Code.Canceled) return new ConnectError("cancelled", e.code);
  console.warn(`${service} call failed: [${Code[e.code]}] ${e.rawMessage}`);
  return new ConnectError(`${service} is unavailable`, Code.Unavailable);
}

const DEGRADED = Symbol("degraded");

/** The part `call` fetches, or DEGRADED when it fails. */
async function optional(section, call) {
  try {
    return await call();
  } catch (error) {
    console.warn(`optional part ${section} degraded: ${ConnectError.from(error).message}`);
    return DEGRADED;
  }
}

function required(value, what) {
  if (value === undefined) throw new Error(`answered without ${what}`);
  return value;
}

/** The handler, over the downstream clients `ds`. */
export function productPage(ds) {
  return async function getProductPage(request, ctx) {
    const id = request.productId;
    if (id === "") {
      throw new ConnectError("product_id is required", Code.InvalidArgument);
    }
    if (id.length > MAX_ID_CHARS && [...id].length > MAX_ID_CHARS) {
      throw new ConnectError(`product_id must be at most ${MAX_ID_CHARS} characters`, Code.InvalidArgument);
    }
    // The caller's deadline, as what is left of it, and its cancellation.
    const options = { timeoutMs: ctx.timeoutMs(), signal: ctx.signal };
    const product = ds.catalog.getProduct({ id }, options).then(
      (answer) => {
        if (!answer.product) throw new ConnectError(`product ${id} not found`, Code.NotFound);
        return answer.product;
      },
      (error) => {
        throw named("catalog", error);
      },
    );
    const [found, stock, summary, reviews, related] = await Promise.all([
      product,
      optional("stock", async () => {
        const answer = await ds.inventory.getStock({ productId: id }, options);
        return required(answer.stock, "stock");
      }),
      optional("summary", async () => {
        const answer = await ds.reviews.getReviewSummary({ productId: id }, options);
        return required(answer.summary, "a summary");
      }),
      optional("reviews", async () => {
        const answer = await ds.reviews.listReviews({ productId: id, pageSize: PAGE_REVIEWS }, options);
        return answer.reviews;
      }),
      optional("related", async () => {
        const answer = await ds.catalog.listRelatedProducts({ productId: id, pageSize: PAGE_RELATED }, options);
        return answer.products;
      }),
    ]);

    const degradedSections = [];
    if (stock === DEGRADED) degradedSections.push("availability");
    if (summary === DEGRADED || reviews === DEGRADED) degradedSections.push("reviews");
    if (related === DEGRADED) degradedSections.push("related");
    return create(GetProductPageResponseSchema, {
      product: shape.details(found),
      availability: stock === DEGRADED ? undefined : shape.availability(stock),
      reviews:
        summary === DEGRADED || reviews === DEGRADED
          ? undefined
          : create(ReviewsSectionSchema, {
              rating: shape.rating(summary),
              reviews: reviews.map(shape.review),
            }),
      related: related === DEGRADED ? [] : related.map(shape.card),
      degradedSections,
    });
  };
}
