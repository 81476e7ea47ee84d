// Calls the web BFF with the official grpc-web runtime (the `grpc-web` npm
// package), in either of its wire formats:
//   binary: content-type application/grpc-web+proto
//   text:   content-type application/grpc-web-text (base64 frames)
// The runtime is written for browsers and sends through XMLHttpRequest, which
// Node lacks; the xhr2 package provides it.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import grpcWeb from "grpc-web";
import xhr2 from "xhr2";

const { GrpcWebClientBase, MethodDescriptor, MethodType } = grpcWeb;

/**
 * xhr2 with a responseText that grows while the response arrives, as in a
 * browser: xhr2 itself sets responseText only when the response has ended,
 * and the runtime's text format reads each message from the growing text, so
 * without this a text-mode stream would arrive all at once at its end.
 * (Binary mode reads an ArrayBuffer response, which is only whole at the end
 * in browsers too.) Uses xhr2's internals, hence the exact version pin.
 */
class StreamingXMLHttpRequest extends xhr2 {
  _onHttpResponseData(response, data) {
    super._onHttpResponseData(response, data);
    if (this._response === response && (this.responseType === "" || this.responseType === "text")) {
      this._parseTextResponse(Buffer.concat(this._responseParts));
      this._setReadyState(xhr2.LOADING);
    }
  }
}

// The runtime looks XMLHttpRequest up globally whenever it starts a call.
globalThis.XMLHttpRequest = StreamingXMLHttpRequest;

/**
 * A grpc-web MethodDescriptor for a protobuf-es method: the runtime only needs
 * the path and the (de)serializers, which protobuf-es provides from the schema.
 */
function methodDescriptor(method) {
  return new MethodDescriptor(
    `/${method.parent.typeName}/${method.name}`,
    method.methodKind === "server_streaming" ? MethodType.SERVER_STREAMING : MethodType.UNARY,
    Object,
    Object,
    (message) => toBinary(method.input, message),
    (bytes) => fromBinary(method.output, bytes),
  );
}

/**
 * The outcome of one call, once the response is complete:
 * `messages` every response message with the time it arrived (ms),
 * `error` the RpcError (code, message, metadata) for a non-OK status,
 * `status` the status from the trailers ({ code, details, metadata }),
 * `headers` the response headers.
 */
export class GrpcWebClient {
  constructor(baseUrl, format) {
    this.baseUrl = baseUrl;
    this.client = new GrpcWebClientBase({ format });
  }

  /** A unary call through rpcCall; `response` is its one message. */
  unary(method, request, metadata = {}) {
    return this.#call(method, (url, descriptor, onResult) =>
      this.client.rpcCall(url, create(method.input, request), metadata, descriptor, (error, response) =>
        onResult({ error: error ?? undefined, response: response ?? undefined }),
      ),
    );
  }

  /** A server-streaming call; `messages` holds what arrived, in order. */
  serverStreaming(method, request, metadata = {}) {
    return this.#call(method, (url, descriptor, onResult) => {
      const stream = this.client.serverStreaming(url, create(method.input, request), metadata, descriptor);
      stream.on("error", (error) => onResult({ error }));
      return stream;
    });
  }

  #call(method, start) {
    return new Promise((resolve) => {
      const result = { messages: [], error: undefined, response: undefined, status: undefined, headers: undefined };
      const url = `${this.baseUrl}/${method.parent.typeName}/${method.name}`;
      const stream = start(url, methodDescriptor(method), (outcome) => Object.assign(result, outcome));
      stream.on("data", (message) => result.messages.push({ message, at: Date.now() }));
      stream.on("status", (status) => (result.status = status));
      // The response headers are reported when the HTTP response is complete;
      // the final error or end follows in the same turn.
      stream.on("metadata", (headers) => {
        result.headers = headers;
        setImmediate(() => resolve(result));
      });
    });
  }
}
