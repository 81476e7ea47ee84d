import http from "node:http";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import { ShopService, ListProductsResponseSchema, WatchOrderResponseSchema, OrderStatus } from "../src/gen/tailor/web/v1/shop_pb.js";

function frame(flag, bytes) { const b = Buffer.alloc(5 + bytes.length); b[0] = flag; b.writeUInt32BE(bytes.length, 1); Buffer.from(bytes).copy(b, 5); return b; }
const server = http.createServer((req, res) => {
  const chunks = []; req.on("data", c => chunks.push(c)); req.on("end", async () => {
    const ct = req.headers["content-type"]; const text = ct.startsWith("application/grpc-web-text");
    let body = Buffer.concat(chunks); if (text) body = Buffer.from(body.toString(), "base64");
    const msg = body.subarray(5);
    const out = (b) => res.write(text ? Buffer.from(b).toString("base64") : b);
    const path = req.url;
    console.error("MOCK", req.method, path, ct, JSON.stringify(req.headers));
    if (path.endsWith("/GetProductPage")) {
      res.writeHead(200, { "content-type": text ? "application/grpc-web-text+proto" : "application/grpc-web+proto", "grpc-status": "5", "grpc-message": "no product prod-999999" });
      return res.end();
    }
    res.writeHead(200, { "content-type": text ? "application/grpc-web-text+proto" : "application/grpc-web+proto" });
    if (path.endsWith("/ListProducts")) {
      const r = fromBinary(ShopService.method.listProducts.input, msg);
      if (r.pageSize < 0) { out(frame(0x80, Buffer.from("grpc-status: 3\r\ngrpc-message: page_size%20negative\r\n"))); return res.end(); }
      out(frame(0, toBinary(ListProductsResponseSchema, create(ListProductsResponseSchema, { products: Array.from({length: r.pageSize}, (_, i) => ({ id: `prod-${i}` })), totalSize: 300 }))));
      out(frame(0x80, Buffer.from("grpc-status: 0\r\ngrpc-message: \r\n"))); return res.end();
    }
    if (path.endsWith("/WatchOrder")) {
      for (let s = 1; s <= 5; s++) { out(frame(0, toBinary(WatchOrderResponseSchema, create(WatchOrderResponseSchema, { order: { id: "o1", status: s } })))); await new Promise(r => setTimeout(r, 300)); }
      out(frame(0x80, Buffer.from("grpc-status: 0\r\n"))); return res.end();
    }
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
