// `ferry server`: PKI, store, registry, HTTPS API, then the control loops.
#include "controlplane-lite/server.h"

#include "api/log.h"
#include "api/metrics.h"
#include "controlplane-lite/api_handler.h"
#include "controlplane-lite/certs.h"
#include "controlplane-lite/cluster_bootstrap.h"
#include "controlplane-lite/control_loops.h"
#include "controlplane-lite/http_server.h"
#include "controlplane-lite/leader_election.h"
#include "controlplane-lite/metrics_api.h"
#include "controlplane-lite/node_certificates.h"
#include "controlplane-lite/node_proxy.h"
#include "controlplane-lite/registry.h"
#include "controlplane-lite/store.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <unistd.h>

namespace ferry::cp {

namespace {

// The first global IPv4 address of an up, non-loopback interface; 127.0.0.1 when there is none.
std::string detectAdvertiseAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "127.0.0.1";
  std::string found;
  for (ifaddrs* i = list; i && found.empty(); i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    if ((i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf);
    found = buf;
  }
  freeifaddrs(list);
  return found.empty() ? "127.0.0.1" : found;
}

struct ListenAddress {
  std::string host;
  int port = 6443;
};

Result<ListenAddress> parseListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return fail(EINVAL, "--listen: want host:port, got \"" + listen + "\"");
  ListenAddress a;
  a.host = listen.substr(0, colon);
  a.port = std::atoi(listen.c_str() + colon + 1);
  if (a.port <= 0 || a.port > 65535) return fail(EINVAL, "--listen: bad port in \"" + listen + "\"");
  return a;
}

}  // namespace

namespace {

// apiserver_request_total and apiserver_request_duration_seconds, labelled as
// kube-apiserver labels them (verb in its upper-case form: LIST, WATCH, GET, ...).
// Watches and other streams are counted but not timed: their handler returns once
// the stream is set up, and they last as long as the client wants.
HttpResponse handleMeasured(ApiHandler& handler, HttpRequest& req) {
  auto started = std::chrono::steady_clock::now();
  ResourcePath rp = parseResourcePath(req.path);
  HttpResponse response = handler.handle(req);
  std::string verb = req.method;
  bool watch = rp.legacyWatch || req.param("watch") == "true" || req.param("watch") == "1";
  if (verb == "GET" && rp.valid && !rp.groupVersionOnly && rp.name.empty()) verb = watch ? "WATCH" : "LIST";
  std::string resource = rp.valid ? rp.plural : "";
  metrics::Labels labels = {{"verb", verb}, {"resource", resource}, {"subresource", rp.subresource}};
  metrics::Labels withCode = labels;
  withCode.push_back({"code", std::to_string(response.status)});
  metrics::registry().counter("apiserver_request_total", "Counter of API server requests by verb, resource and code.",
                              withCode).inc();
  if (!watch && !response.stream && !response.upgrade)
    metrics::registry()
        .histogram("apiserver_request_duration_seconds", "Response latency distribution in seconds by verb and resource.",
                   labels)
        .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return response;
}

}  // namespace

Status runServer(const ServerConfig& config, const std::atomic<bool>& stop, std::function<void()> onReady) {
  // The allocator (jemalloc, an arena per core, thread caches) is set by the ferry binary:
  // cmd/allocator.h.
  auto listen = parseListen(config.listen);
  if (!listen) return fail(listen.error());
  std::error_code ec;
  std::filesystem::create_directories(config.dataDir, ec);
  if (ec) return fail(ec.value(), "--data-dir " + config.dataDir + ": " + ec.message());

  std::string advertise = config.advertiseAddress.empty() ? detectAdvertiseAddress() : config.advertiseAddress;
  std::string urlHost = (listen->host.empty() || listen->host == "0.0.0.0") ? "127.0.0.1" : listen->host;
  std::string serverUrl = "https://" + urlHost + ":" + std::to_string(listen->port);

  SubjectAltNames sans;
  sans.dnsNames = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc." + config.clusterDomain};
  sans.ips = {"127.0.0.1", "10.43.0.1"};
  for (const auto& ip : {advertise, urlHost})
    if (std::find(sans.ips.begin(), sans.ips.end(), ip) == sans.ips.end()) sans.ips.push_back(ip);
  char hostname[256] = {};
  if (gethostname(hostname, sizeof hostname - 1) == 0 && hostname[0]) sans.dnsNames.push_back(hostname);
  auto store = openStore(config.datastore, config.dataDir);
  if (!store) return fail(store.error());
  bool shared = config.datastore.rfind("etcd://", 0) == 0;
  if (shared) {
    if (auto st = prepareClusterCa(**store, config.dataDir, config.joinTokenFile); !st)
      return fail(st.error().wrap("joining the cluster on " + config.datastore));
  } else if (!config.joinTokenFile.empty()) {
    return fail(EINVAL, "--token-file joins servers that share an etcd --datastore; with sqlite there is nothing to join");
  }
  auto creds = ensureClusterCredentials(config.dataDir, sans, serverUrl);
  if (!creds) return fail(creds.error().wrap("cluster credentials"));
  if (shared)
    if (auto st = publishClusterCa(**store, config.dataDir); !st)
      return fail(st.error().wrap("publishing the cluster CA on " + config.datastore));
  Registry registry(**store, config);
  if (auto st = registry.bootstrap(advertise, listen->port); !st) return fail(st.error().wrap("bootstrap objects"));

  // The client certificate the API server shows the agents' node APIs (logs, exec, stats).
  auto nodeClient = issueCertificate(creds->ca, "ferry:apiserver-node-client", {"system:masters"}, {}, false, 365);
  if (!nodeClient) return fail(nodeClient.error().wrap("node API client certificate"));
  NodeProxy nodeProxy(*nodeClient, creds->ca.certPem);
  MetricsApi metrics(registry, nodeProxy);
  PodMetricsLookup podMetrics = [&metrics](const std::string& ns, const std::string& pod) {
    return metrics.podMetrics(ns, pod);
  };

  ApiHandlerOptions handlerOptions;
  handlerOptions.joinToken = creds->joinToken;
  handlerOptions.caPem = creds->ca.certPem;
  handlerOptions.serveMetrics = [&metrics](const HttpRequest& req, const std::string& plural, const std::string& ns,
                                           const std::string& name) { return metrics.serve(req, plural, ns, name); };
  NodeCertificateIssuer nodeCertificates(creds->ca, [&registry](const std::string& name) -> std::optional<api::Json> {
    auto node = registry.get("nodes", "", name);
    if (!node) return std::nullopt;
    return *node;
  });
  handlerOptions.serveNodeCertificate = [&nodeCertificates](const HttpRequest& req, const Identity& who) {
    return nodeCertificates.serve(req, who);
  };
  ApiHandler handler(registry, handlerOptions, &nodeProxy);
  HttpsServerOptions httpOptions;
  httpOptions.listen = config.listen;
  httpOptions.certPem = creds->serving.certPem;
  httpOptions.keyPem = creds->serving.keyPem;
  httpOptions.clientCaPem = creds->ca.certPem;
  auto http = startHttpsServer(httpOptions, [&handler](HttpRequest& req) { return handleMeasured(handler, req); });
  if (!http) return fail(http.error());
  log::info("API server listening on {} (kubeconfig {}/kubeconfig)", config.listen, config.dataDir);

  // On etcd several servers share the store: the loops run on the elected leader only.
  std::unique_ptr<ControlLoops> loops;
  std::unique_ptr<LeaderElector> elector;
  if (config.runControllers && shared) {
    // A dead leader is replaced within ttl + 2 × retry ≈ 9 s (the issue asks for 15 s,
    // which also covers the survivor's informer sync); a live one renews 4 times per ttl,
    // so a slow etcd write or two does not cost it the lead.
    LeaderElectionOptions election;
    election.ttl = std::chrono::milliseconds(6000);
    election.retry = std::chrono::milliseconds(1500);
    elector = std::make_unique<LeaderElector>(**store, "/registry/leases/kube-system/ferry-controllers",
                                              std::string(hostname) + "-" + std::to_string(::getpid()), election);
    log::info("datastore is shared: the scheduler and controllers run while this server ({}) holds "
              "kube-system/ferry-controllers", std::string(hostname) + "-" + std::to_string(::getpid()));
    elector->start();
  } else if (config.runControllers) {
    loops = startControlLoops(registry, config, podMetrics);
  }
  if (onReady) onReady();

  auto lastTrim = std::chrono::steady_clock::now();
  while (!stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Under glibc's malloc (the ferry binary uses jemalloc, which returns pages by decay)
    // freed memory goes back to the kernel only from the top of the heap; after a
    // burst (a rollout's watch events, a relist) the free chunks below stay resident
    // until malloc_trim returns their pages.
    if (auto now = std::chrono::steady_clock::now(); now - lastTrim >= std::chrono::seconds(30)) {
      malloc_trim(0);
      lastTrim = now;
    }
    if (!elector) continue;
    if (elector->isLeader() && !loops) {
      log::info("leading: starting the scheduler and controllers");
      loops = startControlLoops(registry, config, podMetrics);
    } else if (!elector->isLeader() && loops) {
      log::info("lost leadership: stopping the scheduler and controllers");
      loops.reset();
    }
  }
  log::info("API server stopping");
  loops.reset();
  if (elector) elector->stop();
  (*http)->stop();
  return {};
}

}  // namespace ferry::cp
