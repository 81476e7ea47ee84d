// The product page: details, stock, reviews, related products and ordering.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Api } from "./api.js";
import { pictureTile, productCard, ratingSummary, stars } from "./card.js";
import { h } from "./dom.js";
import { clearError, showError } from "./errors.js";
import type { Availability, GetProductPageResponse, ProductDetails, ReviewsSection } from "./gen/tailor/web/v1/shop_pb.js";
import { OrderPanel } from "./order-panel.js";
import type { SessionStore } from "./session.js";

export class ProductView {
  private productId = "";
  private request = 0;
  private orderPanel: OrderPanel | undefined;
  private readonly orderButton = h("button", { type: "button", class: "primary", testid: "order-button" }, "Order");
  private readonly orderHint = h("span", { class: "muted", testid: "order-hint" });

  constructor(
    private readonly root: HTMLElement,
    private readonly api: Api,
    private readonly session: SessionStore,
  ) {
    this.orderButton.addEventListener("click", () => this.order());
    session.subscribe(() => this.updateOrderButton());
  }

  async show(productId: string): Promise<void> {
    const request = ++this.request;
    this.productId = "";
    this.closeOrderPanel();
    this.updateOrderButton();
    clearError();
    this.root.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const page = await this.api.shop.getProductPage({ productId });
      if (request !== this.request) return;
      this.productId = productId;
      this.render(page);
    } catch (error) {
      if (request !== this.request) return;
      this.root.replaceChildren(h("p", {}, h("a", { href: "#/" }, "← Back to the products")));
      showError(`Could not load product ${productId}`, error);
    }
  }

  /** Leaving the page stops following its order. */
  hide(): void {
    this.request++;
    this.closeOrderPanel();
  }

  private closeOrderPanel(): void {
    this.orderPanel?.dispose();
    this.orderPanel = undefined;
  }

  private updateOrderButton(): void {
    const signedIn = this.session.session !== undefined;
    this.orderButton.disabled = !signedIn || this.productId === "";
    this.orderHint.textContent = signedIn ? "" : "Sign in to order.";
  }

  private order(): void {
    this.closeOrderPanel();
    const panel = new OrderPanel(this.api);
    this.orderPanel = panel;
    this.root.querySelector("[data-testid=order-panel]")?.replaceWith(panel.element);
    void panel.place(this.productId);
  }

  private render(page: GetProductPageResponse): void {
    const product = page.product;
    if (!product) throw new Error("GetProductPage answered without a product");
    this.updateOrderButton();
    this.root.replaceChildren(
      h("p", {}, h("a", { href: "#/", testid: "back-link" }, "← Back to the products")),
      h(
        "article",
        { class: "product", testid: "product", "data-product-id": product.id },
        h("div", { class: "product-main" }, pictureTile(product.pictures[0], product.title), details(product)),
        h("div", { class: "buy" }, this.orderButton, this.orderHint),
        h("div", { testid: "order-panel" }),
        page.degradedSections.length > 0 &&
          h("p", { class: "degraded", testid: "degraded" }, `Not available right now: ${page.degradedSections.join(", ")}`),
        page.availability && availabilitySection(page.availability),
        page.reviews && reviewsSection(page.reviews),
        page.related.length > 0 &&
          h("section", { testid: "related" }, h("h2", {}, "Related products"), h("div", { class: "grid" }, ...page.related.map(productCard))),
      ),
    );
  }
}

function details(product: ProductDetails): HTMLElement {
  const attributes = Object.entries(product.attributes)
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]);
  return h(
    "div",
    { class: "details" },
    h("h1", { testid: "product-title" }, product.title),
    h("p", { class: "muted" }, `${product.brand} · ${product.categoryName} · SKU ${product.sku}`),
    h("p", { class: "price big", testid: "product-price" }, product.price?.display ?? ""),
    h("p", { class: "text", testid: "product-description" }, product.description),
    attributes.length > 0 && h("dl", { class: "attributes" }, ...attributes),
  );
}

function availabilitySection(availability: Availability): HTMLElement {
  const rows = availability.warehouses.map((warehouse) =>
    h(
      "tr",
      {},
      h("td", {}, warehouse.warehouseName),
      h("td", {}, String(warehouse.availableUnits)),
      h("td", {}, warehouse.shipDays === 1 ? "1 day" : `${warehouse.shipDays} days`),
    ),
  );
  return h(
    "section",
    { testid: "availability" },
    h("h2", {}, "Availability"),
    h("p", { testid: "availability-summary" }, availability.summary),
    h("p", { class: "muted", testid: "available-units" }, `${availability.totalAvailableUnits} units available`),
    rows.length > 0 &&
      h(
        "table",
        { class: "warehouses" },
        h("thead", {}, h("tr", {}, h("th", {}, "Warehouse"), h("th", {}, "Units"), h("th", {}, "Ships in"))),
        h("tbody", {}, ...rows),
      ),
  );
}

function reviewsSection(section: ReviewsSection): HTMLElement {
  const reviews = section.reviews.map((review) =>
    h(
      "li",
      { class: "review", testid: "review" },
      h("span", { class: "rating", testid: "review-rating", "aria-label": `${review.rating} of 5 stars` }, stars(review.rating)),
      h("strong", {}, ` ${review.title}`),
      h(
        "p",
        { class: "muted" },
        `${review.authorName}${review.createTime ? `, ${timestampDate(review.createTime).toLocaleDateString()}` : ""} · ${review.helpfulCount} found this helpful`,
      ),
      h("p", { class: "text", testid: "review-body" }, review.body),
    ),
  );
  return h(
    "section",
    { testid: "reviews" },
    h("h2", {}, "Reviews"),
    section.rating && h("p", { testid: "rating-summary" }, ratingSummary(section.rating)),
    reviews.length > 0 ? h("ul", { class: "reviews" }, ...reviews) : h("p", { class: "muted" }, "No reviews yet."),
  );
}
