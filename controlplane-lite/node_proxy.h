// The API server's client to the nodes' agents (agent/server/node_api.h): relays
// pods/log streams and pods/exec WebSocket sessions, and fetches /stats/summary for
// metrics.k8s.io. It authenticates with a client certificate the cluster CA signed
// (O=system:masters) and verifies the agent's serving certificate against the cluster
// CA and the node's address (as kube-apiserver does with
// --kubelet-certificate-authority): an agent whose certificate is not CA-signed or does
// not name the address is refused, with the reason in the Status kubectl prints.
#pragma once

#include "api/error.h"
#include "api/object.h"
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/certs.h"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::cp {

// "<InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>" of a Node object (port
// 10250 when unset); empty when the node has no InternalIP.
std::string nodeApiEndpoint(const api::Json& node);

class NodeProxy : public NodeConnector {
 public:
  // `clusterCaPem`: the CA the agents' serving certificates must chain to.
  NodeProxy(PemPair clientCertificate, std::string clusterCaPem);

  // pods/log: the agent's chunked text streamed on; pods/exec: the WebSocket upgrade
  // forwarded and the connection relayed byte for byte both ways. Errors become Status
  // objects (503 when the agent cannot be reached, 502 when its certificate is refused).
  HttpResponse proxy(const std::string& nodeAddress, const HttpRequest& original, const std::string& pathAndQuery) override;

  // A plain GET of the whole body (status 200 only).
  Result<std::string> get(const std::string& nodeAddress, const std::string& path, std::chrono::seconds timeout);

 private:
  PemPair client_;
  std::string caPem_;
};

// ---- HTTP/1.1 response parsing, exposed for tests ----

struct ResponseHead {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::size_t size = 0;                          // bytes of the head, blank line included
};
// The head at the start of `bytes`, nullopt while incomplete; malformed heads are errors.
Result<std::optional<ResponseHead>> parseResponseHead(std::string_view bytes);

// Decodes a chunked body as it arrives.
class ChunkedBodyDecoder {
 public:
  // Appends `bytes`; returns the body bytes now complete.
  Result<std::string> feed(std::string_view bytes);
  bool done() const { return done_; }

 private:
  std::string buffer_;
  std::size_t remaining_ = 0;  // of the current chunk's data
  bool inData_ = false;
  bool done_ = false;
};

}  // namespace ferry::cp
