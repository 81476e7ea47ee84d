// A product card, as the list and the "related products" row show it.
import { h } from "./dom.js";
import type { Picture, ProductCard, Rating } from "./gen/tailor/web/v1/shop_pb.js";

function productHref(productId: string): string {
  return `#/product/${encodeURIComponent(productId)}`;
}

/**
 * A stand-in for the product picture. The generated catalogue's image URLs
 * point at a host that does not exist, so the page never requests them and
 * shows the alt text on a tile instead.
 */
export function pictureTile(picture: Picture | undefined, fallback: string): HTMLElement {
  const text = picture?.altText || fallback;
  return h("div", { class: "picture", role: "img", "aria-label": text, title: text }, text.slice(0, 1).toUpperCase());
}

export function stars(rating: number): string {
  const full = Math.round(rating);
  return "★".repeat(full) + "☆".repeat(5 - full);
}

export function ratingSummary(rating: Rating): string {
  return `${stars(rating.average)} ${rating.average.toFixed(1)} (${rating.count} reviews)`;
}

export function productCard(card: ProductCard): HTMLElement {
  return h(
    "a",
    { class: "card", href: productHref(card.id), testid: "product-card", "data-product-id": card.id },
    pictureTile(card.picture, card.title),
    h("span", { class: "card-title", testid: "product-card-title" }, card.title),
    h("span", { class: "muted" }, `${card.brand} · ${card.categoryName}`),
    h("span", { class: "price" }, card.price?.display ?? ""),
    card.rating &&
      h("span", { class: "rating", testid: "product-card-rating", "data-review-count": String(card.rating.count) }, ratingSummary(card.rating)),
    card.availableUnits !== undefined &&
      h("span", { class: card.availableUnits > 0 ? "stock" : "stock out" }, card.availableUnits > 0 ? `${card.availableUnits} in stock` : "Out of stock"),
  );
}
