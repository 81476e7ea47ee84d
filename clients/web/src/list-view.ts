// The product list: a search box, a grid of cards and next/previous paging.
import type { Api } from "./api.js";
import { productCard } from "./card.js";
import { h } from "./dom.js";
import { clearError, showError } from "./errors.js";
import type { ListProductsResponse } from "./gen/tailor/web/v1/shop_pb.js";

const PAGE_SIZE = 12;

export class ListView {
  private query = "";
  /** page_token of every page up to the one shown; the first page's is "". */
  private tokens = [""];
  private loaded = false;
  private request = 0;

  private readonly search = h("input", { type: "search", name: "query", placeholder: "Search products", "aria-label": "Search products", testid: "search-input" });
  private readonly summary = h("p", { class: "muted", testid: "list-summary" });
  private readonly grid = h("div", { class: "grid", testid: "product-list" });
  private readonly previous = h("button", { type: "button", testid: "previous-page" }, "← Previous");
  private readonly next = h("button", { type: "button", testid: "next-page" }, "Next →");
  private readonly pageLabel = h("span", { class: "muted", testid: "page-number" });
  private nextToken = "";

  constructor(
    private readonly root: HTMLElement,
    private readonly api: Api,
  ) {
    const form = h("form", { class: "search", role: "search", testid: "search-form" }, this.search, h("button", { type: "submit", testid: "search-button" }, "Search"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.query = this.search.value.trim();
      this.tokens = [""];
      void this.load();
    });
    this.previous.addEventListener("click", () => {
      this.tokens.pop();
      void this.load();
    });
    this.next.addEventListener("click", () => {
      this.tokens.push(this.nextToken);
      void this.load();
    });
    this.root.append(form, this.summary, this.grid, h("nav", { class: "pager" }, this.previous, this.pageLabel, this.next));
  }

  /** Shows the list; the first time, loads the first page. Returning keeps query and page. */
  show(): void {
    if (!this.loaded) {
      this.loaded = true;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    const request = ++this.request;
    clearError();
    this.previous.disabled = true;
    this.next.disabled = true;
    this.root.setAttribute("aria-busy", "true");
    try {
      const response = await this.api.shop.listProducts({
        pageSize: PAGE_SIZE,
        pageToken: this.tokens[this.tokens.length - 1],
        query: this.query,
      });
      if (request === this.request) this.render(response);
    } catch (error) {
      if (request === this.request) {
        showError("Could not load the products", error);
        this.previous.disabled = this.tokens.length <= 1;
      }
    } finally {
      if (request === this.request) this.root.removeAttribute("aria-busy");
    }
  }

  private render(response: ListProductsResponse): void {
    const matches = response.totalSize === 1 ? "1 product" : `${response.totalSize} products`;
    this.summary.textContent = this.query ? `${matches} matching “${this.query}”` : matches;
    this.summary.dataset.total = String(response.totalSize);
    if (response.degradedSections.length > 0) {
      this.summary.append(h("span", { class: "degraded" }, ` (not available right now: ${response.degradedSections.join(", ")})`));
    }
    this.grid.replaceChildren(...response.products.map(productCard));
    if (response.products.length === 0) {
      this.grid.append(h("p", { class: "muted", testid: "no-results" }, "Nothing found."));
    }
    this.nextToken = response.nextPageToken;
    this.previous.disabled = this.tokens.length <= 1;
    this.next.disabled = response.nextPageToken === "";
    this.pageLabel.textContent = `Page ${this.tokens.length}`;
  }
}
