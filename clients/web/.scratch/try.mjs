import { GrpcWebClient } from "../tests/support/grpc-web-client.mjs";
import { ShopService } from "../src/gen/tailor/web/v1/shop_pb.js";
const base = `http://127.0.0.1:${process.argv[2]}`;
for (const f of ["binary", "text"]) {
  const c = new GrpcWebClient(base, f);
  let r = await c.unary(ShopService.method.listProducts, { pageSize: 3 });
  console.log(f, "list", r.response?.products.length, r.status, r.error, r.headers);
  r = await c.unary(ShopService.method.listProducts, { pageSize: -1 });
  console.log(f, "list -1", r.response, r.status, r.error?.code, r.error?.message);
  r = await c.unary(ShopService.method.getProductPage, { productId: "prod-999999" });
  console.log(f, "gpp", r.status, r.error?.code, r.error?.message);
  const t0 = Date.now();
  r = await c.serverStreaming(ShopService.method.watchOrder, { orderId: "o1" });
  console.log(f, "watch", r.messages.map(m => [m.message.order.status, m.at - t0]), r.status, r.error);
}
