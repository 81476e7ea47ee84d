// Downstream data in the web's shape: the same fields, order and wording
// as the Rust web BFF (crates/bff/web-bff/src/shape.rs), so that both
// answer the same bytes for the same product.

import { create } from "@bufbuild/protobuf";
import {
  AvailabilitySchema,
  ImageSourceSchema,
  PictureSchema,
  PriceSchema,
  ProductCardSchema,
  ProductDetailsSchema,
  RatingSchema,
  ReviewSchema,
  WarehouseAvailabilitySchema,
} from "./gen/tailor/web/v1/shop_pb.js";

const SYMBOLS = { EUR: "€", USD: "$", GBP: "£" };

/** "€19.99", "$5.00", "12.50 CHF". `amountMinor` is a bigint (int64). */
export function displayMoney(money) {
  const major = money.amountMinor / 100n;
  const rest = money.amountMinor % 100n;
  const minor = String(rest < 0n ? -rest : rest).padStart(2, "0");
  const symbol = SYMBOLS[money.currencyCode];
  return symbol ? `${symbol}${major}.${minor}` : `${major}.${minor} ${money.currencyCode}`;
}

export function price(money) {
  return money && create(PriceSchema, { amount: money, display: displayMoney(money) });
}

export function picture(image) {
  // Array.prototype.sort is stable, as Rust's sort_by_key is.
  const sources = image.variants
    .map((v) => create(ImageSourceSchema, { url: v.url, width: v.width, height: v.height }))
    .sort((a, b) => a.width - b.width);
  return create(PictureSchema, { altText: image.altText, sources });
}

// Rust's f64::round: halves away from zero (Math.round takes them up).
const round = (x) => (x < 0 ? -Math.round(-x) : Math.round(x));

export function rating(summary) {
  return create(RatingSchema, {
    average: round(summary.averageRating * 10) / 10,
    count: summary.reviewCount,
    histogram: summary.ratingHistogram,
  });
}

/** A related product's card: no rating, no stock. */
export function card(product) {
  return create(ProductCardSchema, {
    id: product.id,
    title: product.title,
    brand: product.brand,
    categoryName: product.categoryName,
    price: price(product.price),
    picture: product.images.length > 0 ? picture(product.images[0]) : undefined,
  });
}

export function details(product) {
  return create(ProductDetailsSchema, {
    id: product.id,
    sku: product.sku,
    title: product.title,
    brand: product.brand,
    categoryId: product.categoryId,
    categoryName: product.categoryName,
    description: product.description,
    price: price(product.price),
    pictures: product.images.map(picture),
    attributes: product.attributes,
  });
}

const days = (n) => (n === 1 ? "1 day" : `${n} days`);

export function availability(stock) {
  const warehouses = stock.warehouses
    .map((w) =>
      create(WarehouseAvailabilitySchema, {
        warehouseName: w.warehouseName,
        availableUnits: w.available,
        shipDays: w.shipDays,
      }),
    )
    .sort((a, b) => a.shipDays - b.shipDays || b.availableUnits - a.availableUnits);
  const fastest = warehouses.find((w) => w.availableUnits > 0)?.shipDays;
  const total = stock.totalAvailable;
  let summary;
  if (total === 0 || fastest === undefined) {
    summary = "Out of stock";
  } else if (total < 10) {
    summary = `Only ${total} left, ships in ${days(fastest)}`;
  } else {
    summary = `In stock, ships in ${days(fastest)}`;
  }
  return create(AvailabilitySchema, { totalAvailableUnits: total, warehouses, summary });
}

export function review(r) {
  return create(ReviewSchema, {
    authorName: r.authorName,
    rating: r.rating,
    title: r.title,
    body: r.body,
    helpfulCount: r.helpfulCount,
    createTime: r.createTime,
  });
}
