// The order panel: places an order and follows its status live over the
// WatchOrder stream, keeping every status it received in a history list.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Api } from "./api.js";
import { h } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { type Order, OrderStatus } from "./gen/tailor/web/v1/shop_pb.js";

export class OrderPanel {
  readonly element = h("section", { class: "order-panel", testid: "order-panel" });
  private readonly abort = new AbortController();
  private readonly status = h("strong", { testid: "order-status" });
  private readonly history = h("ol", { class: "history", testid: "order-history" });
  private lastStatus = OrderStatus.UNSPECIFIED;

  constructor(private readonly api: Api) {}

  /** Stops following the order, for when the page changes. */
  dispose(): void {
    this.abort.abort();
  }

  async place(productId: string): Promise<void> {
    clearError();
    this.element.replaceChildren(h("p", { class: "muted" }, "Placing the order…"));
    try {
      const { order } = await this.api.shop.placeOrder(
        { idempotencyKey: crypto.randomUUID(), lines: [{ productId, quantity: 1 }] },
        { signal: this.abort.signal },
      );
      if (!order) throw new Error("PlaceOrder answered without an order");
      this.renderOrder(order);
      await this.watch(order.id);
    } catch (error) {
      if (this.abort.signal.aborted) return;
      this.element.dataset.state = "failed";
      showError("The order failed", error);
    }
  }

  private renderOrder(order: Order): void {
    const lines = order.lines.map((line) =>
      h("li", {}, `${line.quantity} × ${line.title} at ${line.unitPrice?.display ?? ""}`),
    );
    this.element.dataset.state = "watching";
    this.element.replaceChildren(
      h("h2", {}, "Your order"),
      h("p", {}, "Order ", h("code", { testid: "order-id" }, order.id), ` · total ${order.total?.display ?? ""}`),
      h("ul", { class: "lines" }, ...lines),
      h("p", {}, "Status: ", this.status),
      h("h3", {}, "Status updates"),
      this.history,
    );
    this.record(order);
  }

  private async watch(orderId: string): Promise<void> {
    let last: Order | undefined;
    for await (const { order } of this.api.shop.watchOrder({ orderId }, { signal: this.abort.signal })) {
      if (order) {
        this.record(order);
        last = order;
      }
    }
    this.element.dataset.state = "done";
    this.element.append(
      h("p", { class: "final", testid: "order-final" }, `Final state: ${last?.statusLabel ?? this.status.textContent}`),
    );
  }

  /** Shows the order's status and adds it to the history when it changed. */
  private record(order: Order): void {
    this.status.textContent = order.statusLabel;
    this.status.dataset.status = OrderStatus[order.status];
    if (order.status === this.lastStatus) return;
    this.lastStatus = order.status;
    const at = order.updateTime ? timestampDate(order.updateTime).toLocaleTimeString() : "";
    this.history.append(
      h("li", { testid: "order-history-item", "data-status": OrderStatus[order.status] }, order.statusLabel, h("span", { class: "muted" }, ` ${at}`)),
    );
  }
}
