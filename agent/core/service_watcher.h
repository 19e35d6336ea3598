// Keeps the node's Service data path and cluster DNS in step with the API:
// Services and EndpointSlices from the watch go to the proxy (kernel maps) and
// to the DNS zone (an immutable snapshot rebuilt on change, debounced).
#pragma once

#include "api/object.h"
#include "api/types.h"
#include "dns/cluster_dns.h"
#include "proxy/service_proxy.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace ferry::agent {

struct ServiceWatcherConfig {
  std::string clusterDomain = "cluster.local";
  std::string dnsListenAddress;  // node-local DNS address (the bridge gateway); empty: no DNS
  int dnsPort = 53;
  std::string dnsUpstream;       // host:port[,...]; empty: the node's resolv.conf
  std::vector<std::string> dnsStubDomains;  // "domain=host:port[,...]" each
  std::string dnsNamespace = "kube-system";
  std::string dnsServiceName = "kube-dns";
};

class ServiceWatcher {
 public:
  ServiceWatcher(proxy::ServiceProxy& proxy, ServiceWatcherConfig config);
  ~ServiceWatcher();

  Status startDns();

  void onServiceUpsert(const api::Json& object);
  void onServiceDelete(const api::Json& object);
  void onSliceUpsert(const api::Json& object);
  void onSliceDelete(const api::Json& object);
  // After the first lists: drop what the kernel holds and the API does not.
  void resync(const std::vector<api::Json>& services, const std::vector<api::Json>& slices);
  // This node's pods (IP → namespace), for DNS search-path expansion.
  void setLocalPods(dns::ClusterDns::ClientNamespaces pods);
  // Updates the /metrics gauges: BPF map memory, Services, DNS queries (and their
  // rate since the last call). Called periodically by the agent's main loop.
  void sampleMetrics();

 private:
  void markZoneDirty();
  void zoneLoop();

  proxy::ServiceProxy& proxy_;
  ServiceWatcherConfig config_;
  std::mutex mu_;  // the proxy is single-threaded; watches run on several threads
  std::map<std::string, api::Service> services_;
  std::map<std::string, api::EndpointSlice> slices_;
  std::unique_ptr<dns::ClusterDns> dns_;
  std::condition_variable zoneCv_;
  bool zoneDirty_ = false;
  std::atomic<bool> stop_{false};
  std::thread zoneThread_;
  std::uint64_t lastDnsQueries_ = 0;  // sampleMetrics() runs on one thread only
  std::chrono::steady_clock::time_point lastDnsSample_{};
};

}  // namespace ferry::agent
