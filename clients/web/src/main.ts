// Starts the shop: finds the BFF, restores the session and routes between the
// product list (#/) and a product page (#/product/<id>).
import "./style.css";
import { createApi, loadBffUrl } from "./api.js";
import { byTestId } from "./dom.js";
import { showError } from "./errors.js";
import { ListView } from "./list-view.js";
import { ProductView } from "./product-view.js";
import { mountSessionArea, restoreSession, SessionStore } from "./session.js";
import { traceUserActions } from "./trace.js";

async function start(): Promise<void> {
  traceUserActions();
  const api = createApi(await loadBffUrl());
  const session = new SessionStore();
  mountSessionArea(byTestId("session-area"), api, session);

  const listSection = byTestId("list-view");
  const productSection = byTestId("product-view");
  const list = new ListView(listSection, api);
  const product = new ProductView(productSection, api, session);

  const route = () => {
    const match = /^#\/product\/(.+)$/.exec(location.hash);
    listSection.hidden = match !== null;
    productSection.hidden = match === null;
    if (match) {
      void product.show(decodeURIComponent(match[1]));
    } else {
      product.hide();
      list.show();
    }
    window.scrollTo(0, 0);
  };
  window.addEventListener("hashchange", route);
  route();
  await restoreSession(api, session);
}

start().catch((error: unknown) => showError("The shop could not start", error));
