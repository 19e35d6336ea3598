// The Kubernetes REST surface: routes an HTTP request to discovery, OpenAPI,
// or a resource verb on the Registry, after authentication and authorization,
// and shapes every answer (objects, lists, Tables, watch streams, Status errors)
// the way kubectl expects (../shared/design/KUBECTL.md).
#pragma once

#include "controlplane-lite/auth.h"
#include "controlplane-lite/http_server.h"
#include "controlplane-lite/registry.h"

#include <atomic>
#include <functional>
#include <string>

namespace ferry::cp {

// Reaches a node's agent for pods/log and pods/exec. The agent serves
// GET /containerLogs/<ns>/<pod>/<container>?follow=&tailLines=&timestamps=&sinceSeconds=&previous=
// and the exec upgrade at /exec/<ns>/<pod>/<container>?command=...&stdin=&stdout=&stderr=&tty=
// on <InternalIP>:<agentPort> (HTTPS, the API server authenticates with its admin client certificate).
class NodeConnector {
 public:
  virtual ~NodeConnector() = default;
  // Streams the agent's answer for `pathAndQuery` to the caller's response. Returns false
  // (with an error) when the agent cannot be reached before anything was sent.
  virtual HttpResponse proxy(const std::string& nodeAddress, const HttpRequest& original, const std::string& pathAndQuery) = 0;
};

struct ApiHandlerOptions {
  std::string joinToken;
  std::string caPem;
  int agentPort = 10250;
  int watchBookmarkSeconds = 30;
  // Serves the metrics.k8s.io resources (nodes, pods); unset: 503.
  std::function<HttpResponse(const HttpRequest&, const std::string& plural, const std::string& ns,
                             const std::string& name)>
      serveMetrics;
  // Serves kNodeCertificatePath (node_certificates.h); unset: 404.
  std::function<HttpResponse(const HttpRequest&, const Identity&)> serveNodeCertificate;
};

class ApiHandler {
 public:
  ApiHandler(Registry& registry, ApiHandlerOptions options, NodeConnector* nodes = nullptr);
  HttpResponse handle(HttpRequest& request);

 private:
  Registry& registry_;
  ApiHandlerOptions options_;
  NodeConnector* nodes_;
};

// Status object and HTTP code for an error from the Registry. `resource`/`name`
// fill in details (may be null/empty).
HttpResponse statusError(const Error& error, const Resource* resource, const std::string& name);
HttpResponse statusResponse(int code, const std::string& reason, const std::string& message);

// Parsed /api/v1/... and /apis/G/V/... paths.
struct ResourcePath {
  bool valid = false;
  bool legacyWatch = false;  // /api/v1/watch/...
  std::string group;
  std::string version;
  std::string plural;
  std::string ns;
  std::string name;
  std::string subresource;
  bool groupVersionOnly = false;  // /api/v1 or /apis/G/V itself
};
ResourcePath parseResourcePath(const std::string& path);

}  // namespace ferry::cp
