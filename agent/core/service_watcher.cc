#include "agent/core/service_watcher.h"

#include "api/log.h"
#include "api/metrics.h"

#include <sstream>

namespace ferry::agent {
namespace {

std::string keyOf(const std::string& ns, const std::string& name) { return ns + "/" + name; }

// One proxy update (or full resync) timed into ferry_proxy_sync_duration_seconds{operation}.
class TimedSync {
 public:
  explicit TimedSync(const char* operation)
      : histogram_(metrics::registry().histogram("ferry_proxy_sync_duration_seconds",
                                                 "Duration in seconds of one Service proxy update (kernel maps and "
                                                 "nftables) by operation.",
                                                 {{"operation", operation}})),
        started_(std::chrono::steady_clock::now()) {}
  ~TimedSync() { histogram_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()); }

 private:
  metrics::Histogram& histogram_;
  std::chrono::steady_clock::time_point started_;
};

metrics::Gauge& gauge(const char* name, const char* help) { return metrics::registry().gauge(name, help); }

}  // namespace

ServiceWatcher::ServiceWatcher(proxy::ServiceProxy& proxy, ServiceWatcherConfig config)
    : proxy_(proxy), config_(std::move(config)) {
  for (const char* op : {"resync", "service", "endpointslice"})
    metrics::registry().histogram("ferry_proxy_sync_duration_seconds",
                                  "Duration in seconds of one Service proxy update (kernel maps and nftables) by "
                                  "operation.",
                                  {{"operation", op}});
  sampleMetrics();
}

void ServiceWatcher::sampleMetrics() {
  std::uint64_t mapBytes = 0;
  size_t services = 0, slices = 0;
  {
    std::lock_guard lock(mu_);
    if (auto bytes = proxy_.mapMemoryBytes()) mapBytes = *bytes;
    services = services_.size();
    slices = slices_.size();
  }
  gauge("ferry_proxy_bpf_map_memory_bytes", "Kernel memory of the Service load balancer's BPF maps in bytes.")
      .set(static_cast<double>(mapBytes));
  gauge("ferry_proxy_services", "Services the proxy programs.").set(static_cast<double>(services));
  gauge("ferry_proxy_endpoint_slices", "EndpointSlices the proxy programs.").set(static_cast<double>(slices));
  auto now = std::chrono::steady_clock::now();
  std::uint64_t queries = dns_ ? dns_->counters().queries : 0;
  auto& total = metrics::registry().counter("ferry_dns_queries_total", "DNS queries the node-local DNS answered.");
  auto& qps = gauge("ferry_dns_queries_per_second", "DNS queries per second over the last sampling interval.");
  if (lastDnsSample_ != std::chrono::steady_clock::time_point{} && queries >= lastDnsQueries_) {
    total.inc(static_cast<double>(queries - lastDnsQueries_));
    double seconds = std::chrono::duration<double>(now - lastDnsSample_).count();
    if (seconds > 0) qps.set(static_cast<double>(queries - lastDnsQueries_) / seconds);
  } else {
    total.inc(static_cast<double>(queries));
  }
  lastDnsQueries_ = queries;
  lastDnsSample_ = now;
  if (dns_) {
    auto c = dns_->counters();
    gauge("ferry_dns_cache_hits", "Answers from the node-local DNS cache since start.").set(static_cast<double>(c.cacheHits));
    gauge("ferry_dns_forwarded", "Queries forwarded upstream since start.").set(static_cast<double>(c.forwarded));
  }
}

ServiceWatcher::~ServiceWatcher() {
  stop_ = true;
  zoneCv_.notify_all();
  if (zoneThread_.joinable()) zoneThread_.join();
}

Status ServiceWatcher::startDns() {
  if (config_.dnsListenAddress.empty()) return {};
  dns::DnsConfig dc;
  dc.listen = {config_.dnsListenAddress + ":" + std::to_string(config_.dnsPort)};
  dc.clusterDomain = config_.clusterDomain;
  std::stringstream ss(config_.dnsUpstream);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) dc.upstreams.push_back(item);
  for (const auto& text : config_.dnsStubDomains) {
    auto stub = dns::parseStubDomain(text);
    if (!stub) return fail(stub.error().wrap("--dns-stub-domain"));
    dc.stubDomains.push_back(std::move(*stub));
  }
  auto started = dns::ClusterDns::start(dc);
  if (!started) return fail(started.error());
  dns_ = std::move(*started);
  zoneThread_ = std::thread([this] { zoneLoop(); });
  return {};
}

void ServiceWatcher::onServiceUpsert(const api::Json& object) {
  auto svc = api::Service::fromJson(object);
  if (!svc) {
    log::warn("service {}/{}: {}", api::namespaceOf(object), api::nameOf(object), svc.error().message);
    return;
  }
  std::lock_guard lock(mu_);
  TimedSync timed("service");
  if (auto st = proxy_.upsertService(*svc); !st) log::warn("proxy: {}", st.error().message);
  // Every agent answers DNS itself: the DNS Service leads to this node's listener.
  if (svc->ns == config_.dnsNamespace && svc->name == config_.dnsServiceName && !config_.dnsListenAddress.empty()) {
    std::vector<proxy::OverrideBackend> local;
    for (const auto& p : svc->ports)
      local.push_back({p.name.empty() ? std::to_string(p.port) : p.name, config_.dnsListenAddress, config_.dnsPort});
    if (auto st = proxy_.setLocalOverride(svc->ns, svc->name, local); !st)
      log::warn("proxy: steer DNS service: {}", st.error().message);
  }
  services_[keyOf(svc->ns, svc->name)] = std::move(*svc);
  markZoneDirty();
}

void ServiceWatcher::onServiceDelete(const api::Json& object) {
  std::string ns = api::namespaceOf(object), name = api::nameOf(object);
  std::lock_guard lock(mu_);
  TimedSync timed("service");
  if (auto st = proxy_.deleteService(ns, name); !st) log::warn("proxy: {}", st.error().message);
  services_.erase(keyOf(ns, name));
  markZoneDirty();
}

void ServiceWatcher::onSliceUpsert(const api::Json& object) {
  auto slice = api::EndpointSlice::fromJson(object);
  if (!slice) return;
  std::lock_guard lock(mu_);
  TimedSync timed("endpointslice");
  if (auto st = proxy_.upsertEndpointSlice(*slice); !st) log::warn("proxy: {}", st.error().message);
  slices_[keyOf(slice->ns, slice->name)] = std::move(*slice);
  markZoneDirty();
}

void ServiceWatcher::onSliceDelete(const api::Json& object) {
  std::string ns = api::namespaceOf(object), name = api::nameOf(object);
  std::lock_guard lock(mu_);
  TimedSync timed("endpointslice");
  if (auto st = proxy_.deleteEndpointSlice(ns, name); !st) log::warn("proxy: {}", st.error().message);
  slices_.erase(keyOf(ns, name));
  markZoneDirty();
}

void ServiceWatcher::resync(const std::vector<api::Json>& services, const std::vector<api::Json>& slices) {
  std::vector<api::Service> svcs;
  std::vector<api::EndpointSlice> sls;
  for (const auto& s : services)
    if (auto v = api::Service::fromJson(s)) svcs.push_back(std::move(*v));
  for (const auto& s : slices)
    if (auto v = api::EndpointSlice::fromJson(s)) sls.push_back(std::move(*v));
  std::lock_guard lock(mu_);
  TimedSync timed("resync");
  if (auto st = proxy_.resync(svcs, sls); !st) log::warn("proxy resync: {}", st.error().message);
  markZoneDirty();
}

void ServiceWatcher::setLocalPods(dns::ClusterDns::ClientNamespaces pods) {
  if (dns_) dns_->publishClients(std::make_shared<const dns::ClusterDns::ClientNamespaces>(std::move(pods)));
}

void ServiceWatcher::markZoneDirty() {
  // Called with mu_ held.
  zoneDirty_ = true;
  zoneCv_.notify_one();
}

void ServiceWatcher::zoneLoop() {
  while (!stop_) {
    std::vector<api::Service> services;
    std::vector<api::EndpointSlice> slices;
    {
      std::unique_lock lock(mu_);
      zoneCv_.wait(lock, [&] { return stop_ || zoneDirty_; });
      if (stop_) return;
      zoneDirty_ = false;
      for (const auto& [k, s] : services_) services.push_back(s);
      for (const auto& [k, s] : slices_) slices.push_back(s);
    }
    dns_->publish(dns::buildZone(config_.clusterDomain, services, slices));
    // Coalesce bursts of changes (a rollout touches many slices).
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ferry::agent
