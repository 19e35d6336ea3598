#include "agent/agent.h"

#include "agent/core/api_client.h"
#include "agent/core/eviction.h"
#include "agent/core/node_credentials.h"
#include "agent/core/node_registration.h"
#include "agent/core/pod_manager.h"
#include "agent/core/service_watcher.h"
#include "agent/core/watched_collection.h"
#include "agent/images/image_store.h"
#include "agent/runtime/container.h"
#include "agent/sandbox/ipam.h"
#include "agent/sandbox/sandbox_manager.h"
#include "agent/server/node_api.h"
#include "cgroup/systemd_delegation.h"
#include "api/log.h"
#include "proxy/service_proxy.h"

#include <fmt/format.h>

#include <malloc.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace ferry::agent {
namespace {

// The path of this process's agent cgroup root in the v2 tree, where the
// Service programs attach so every pod's sockets pass them.
std::string unifiedRoot(SandboxManager& sandboxes) { return sandboxes.cgroups().unifiedDirectory(""); }

void sleepUnlessStopped(const std::atomic<bool>& stop, std::chrono::milliseconds d) {
  for (auto waited = std::chrono::milliseconds(0); waited < d && !stop; waited += std::chrono::milliseconds(100))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

}  // namespace

Status runAgent(const AgentConfig& config, const std::atomic<bool>& stop, std::function<void()> onReady) {
  // The allocator (one arena, no thread caches) is set by the ferry binary: cmd/allocator.h.
  NodeFacts facts = discoverNodeFacts(config);
  auto creds = ensureNodeClientCredentials(config, facts.name, 120, stop);
  if (!creds) return fail(creds.error());
  ApiClient client(*creds);
  fs::create_directories(config.dataDir);
  fs::create_directories(config.runDir);

  NodeRegistration registration(client, facts, config);
  auto podCIDR = registration.registerAndWaitForPodCIDR(120, stop);
  if (!podCIDR) return fail(podCIDR.error());
  log::info("node {} registered ({}), pod CIDR {}", facts.name, facts.internalIP, *podCIDR);
  if (auto st = registration.renewLease(); !st) log::warn("lease: {}", st.error().message);

  std::string cgroupRoot = config.cgroupRoot;
  if (cgroupRoot == cgroup::kDelegatedCgroupRoot) {
    auto delegated = cgroup::adoptDelegatedCgroup();
    if (!delegated) return fail(delegated.error());
    cgroupRoot = *delegated;
    log::info("pods live below this systemd unit's delegated cgroup: {}", cgroupRoot);
  }
  SandboxManagerConfig sandboxConfig;
  sandboxConfig.runDir = config.runDir;
  sandboxConfig.dataDir = config.dataDir;
  sandboxConfig.cgroupRoot = cgroupRoot;
  sandboxConfig.bridgeName = config.bridgeName;
  sandboxConfig.podCIDR = *podCIDR;
  sandboxConfig.podPidsLimit = config.podPidsLimit;
  auto sandboxes = SandboxManager::open(sandboxConfig);
  if (!sandboxes) return fail(sandboxes.error().wrap("node network and cgroups"));

  images::ImageGcPolicy imageGc{config.imageGcHighThresholdPercent, config.imageGcLowThresholdPercent,
                                 std::chrono::seconds(config.imageMinimumGcAgeSeconds)};
  if (auto st = images::validateImageGcPolicy(imageGc); !st) return fail(st.error());
  auto registryOptions = images::loadRegistryOptions(config.registryConfig);
  if (!registryOptions) return fail(registryOptions.error().wrap("--registry-config"));
  auto images = images::ImageStore::open(config.dataDir, *registryOptions);
  if (!images) return fail(images.error().wrap("image store"));

  runtime::RuntimeConfig runtimeConfig;
  runtimeConfig.stateDir = config.runDir + "/containers";
  runtime::ContainerRuntime containerRuntime(runtimeConfig);

  proxy::ProxyConfig proxyConfig;
  proxyConfig.mode = config.proxyMode;
  proxyConfig.cgroupV2Path = unifiedRoot(**sandboxes);
  proxyConfig.bpffsDir = config.bpffsDir;
  proxyConfig.nodeIP = facts.internalIP;
  proxyConfig.clusterCIDR = config.clusterCIDR;
  proxyConfig.serviceCIDR = config.serviceCIDR;
  proxyConfig.nodeName = facts.name;
  auto serviceProxy = proxy::ServiceProxy::start(proxyConfig);
  if (!serviceProxy) return fail(serviceProxy.error().wrap("service proxy"));
  if (auto st = (*serviceProxy)->ensureMasquerade(); !st) log::warn("masquerade: {}", st.error().message);

  // The gateway of the pod CIDR is this node's address on its bridge: the
  // node-local DNS listens there and the DNS Service is steered to it.
  std::string gateway;
  if (auto cidr = Ipv4Cidr::parse(*podCIDR)) gateway = ipv4ToString(cidr->network + 1);

  ServiceWatcherConfig swConfig;
  swConfig.clusterDomain = config.clusterDomain;
  swConfig.dnsListenAddress = gateway;
  swConfig.dnsUpstream = config.dnsUpstream;
  swConfig.dnsStubDomains = config.dnsStubDomains;
  ServiceWatcher services(**serviceProxy, swConfig);
  if (auto st = services.startDns(); !st) log::warn("cluster DNS: {}", st.error().message);

  // Declared before the pods: their containers' service link variables read it.
  WatchedCollection serviceWatch(client, "/api/v1/services",
                                 {.onUpsert = [&](const api::Json& o) { services.onServiceUpsert(o); },
                                  .onDelete = [&](const api::Json& o) { services.onServiceDelete(o); },
                                  .onSynced = {}});
  PodManager pods(client, **sandboxes, **images, containerRuntime, config, facts.name, facts.internalIP);
  pods.setPodCapacity(podCapacity(config.maxPods, *podCIDR));
  pods.setServiceLister([&] { return serviceWatch.snapshot(); });

  // The node API (logs, exec, stats) for the API server.
  NodeApiConfig apiConfig;
  apiConfig.listen = config.listen;
  apiConfig.nodeIP = facts.internalIP;
  apiConfig.nodeName = facts.name;
  apiConfig.clusterCaPem = creds->caPem;
  cp::SubjectAltNames servingNames{{facts.name}, {}};
  if (facts.hostname != facts.name && !facts.hostname.empty()) servingNames.dnsNames.push_back(facts.hostname);
  if (!facts.internalIP.empty()) servingNames.ips = {facts.internalIP};
  if (auto serving = ensureNodeServingCertificate(client, config.dataDir, creds->caPem, facts.name, servingNames)) {
    apiConfig.servingCertPem = serving->certPem;
    apiConfig.servingKeyPem = serving->keyPem;
  } else {
    log::warn("no serving certificate from the cluster CA, the API server will refuse this node's API: {}",
              serving.error().message);
  }
  // Pods run without it (only logs, exec and stats are missing): a failure is not fatal.
  auto nodeApi = NodeApi::start(apiConfig, pods, **sandboxes, containerRuntime);
  if (nodeApi) log::info("node API listening on port {}", (*nodeApi)->port());
  else log::warn("node API not served (kubectl logs/exec/top will fail for this node): {}", nodeApi.error().message);

  // Checked before any thread starts (the flag parser has checked it already).
  auto evictionThresholds = parseEvictionThresholds(config.evictionHard);
  if (!evictionThresholds) return fail(evictionThresholds.error());

  std::vector<std::thread> threads;
  WatchedCollection podWatch(
      client, "/api/v1/pods?fieldSelector=spec.nodeName%3D" + facts.name,
      {.onUpsert = [&](const api::Json& o) { pods.onPodUpsert(o); },
       .onDelete = [&](const api::Json& o) { pods.onPodDelete(o); },
       .onSynced = {}},
      WatchedCollection::Keep::Identity);  // PodManager keeps the pods; on a delete it needs only the uid
  WatchedCollection sliceWatch(client, "/apis/discovery.k8s.io/v1/endpointslices",
                               {.onUpsert = [&](const api::Json& o) { services.onSliceUpsert(o); },
                                .onDelete = [&](const api::Json& o) { services.onSliceDelete(o); },
                                .onSynced = {}});
  WatchedCollection nodeWatch(client, "/api/v1/nodes", {});
  threads.emplace_back([&] { podWatch.run(stop); });
  threads.emplace_back([&] { serviceWatch.run(stop); });
  threads.emplace_back([&] { sliceWatch.run(stop); });
  threads.emplace_back([&] { nodeWatch.run(stop); });

  // Eviction under node pressure (the kubelet's): conditions on the Node, pods evicted in QoS order.
  EvictionConfig evictionConfig;
  evictionConfig.hard = *evictionThresholds;
  evictionConfig.pressureTransitionPeriod =
      parseDurationSeconds(config.evictionPressureTransitionPeriod).value_or(std::chrono::seconds(300));
  evictionConfig.nodeName = facts.name;
  evictionConfig.dataDir = config.dataDir;
  evictionConfig.allocatableMemoryBytes = std::max<std::int64_t>(
      0, facts.memoryBytes - reservedMemoryBytes(config.systemReserved) - reservedMemoryBytes(config.kubeReserved));
  evictionConfig.currentNode = [&nodeWatch, name = facts.name] { return nodeWatch.find("", name); };
  EvictionManager eviction(client, pods, **sandboxes, evictionConfig);
  pods.setAdmission([&eviction](const api::Json& pod) { return eviction.admissionRejection(pod); });
  threads.emplace_back([&] { eviction.run(stop); });

  // Ready once the Service data path has the API's state and pods are known.
  while (!stop && !(serviceWatch.synced() && sliceWatch.synced() && podWatch.synced()))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!stop) {
    services.resync(serviceWatch.snapshot(), sliceWatch.snapshot());
    pods.onPodsSynced(podWatch.snapshot());
    log::info("node {} ready", facts.name);
    if (onReady) onReady();
  }

  auto lastLease = std::chrono::steady_clock::now();
  auto lastTrim = lastLease;
  auto lastCertificateCheck = lastLease;
  auto lastCpuSample = std::chrono::steady_clock::time_point{};
  auto lastMetricsSample = std::chrono::steady_clock::time_point{};
  std::string lastRoutes;
  dns::ClusterDns::ClientNamespaces lastLocalPods;
  while (!stop) {
    sleepUnlessStopped(stop, std::chrono::seconds(1));
    auto now = std::chrono::steady_clock::now();
    if (nodeApi && now - lastCpuSample >= std::chrono::seconds(5)) {
      (*nodeApi)->sampleCpu();
      lastCpuSample = now;
    }
    if (now - lastMetricsSample >= std::chrono::seconds(10)) {
      services.sampleMetrics();
      lastMetricsSample = now;
    }
    if (now - lastCertificateCheck >= std::chrono::hours(1)) {
      if (auto st = renewClientCertificateIfDue(client, config, facts.name, std::time(nullptr)); !st)
        log::warn("node client certificate renewal (retried in an hour): {}", st.error().message);
      lastCertificateCheck = now;
    }
    if (now - lastLease >= std::chrono::seconds(10)) {
      if (auto st = registration.renewLease(); !st) log::warn("lease: {}", st.error().message);
      lastLease = now;
    }
    // Under glibc's malloc (processes other than the ferry binary, which uses jemalloc and
    // its decay) freed memory below the top of the heap stays resident until malloc_trim
    // (after a burst of pod starts, a relist); every 30 s costs little.
    if (now - lastTrim >= std::chrono::seconds(30)) {
      malloc_trim(0);
      lastTrim = now;
    }
    // host-gw routes to the other nodes' pod CIDRs.
    std::vector<PeerNodeRoute> peers;
    std::string key;
    for (const auto& n : nodeWatch.snapshot()) {
      auto node = api::Node::fromJson(n);
      if (!node || node->name == facts.name || node->podCIDR.empty() || node->internalIP().empty()) continue;
      peers.push_back({node->podCIDR, node->internalIP()});
      key += node->podCIDR + ">" + node->internalIP() + ";";
    }
    dns::ClusterDns::ClientNamespaces localPods;
    for (const auto& sb : (*sandboxes)->list())
      if (auto ip = parseIpv4(sb.podIP)) localPods[*ip] = sb.namespace_;
    if (localPods != lastLocalPods) {
      services.setLocalPods(localPods);
      lastLocalPods = std::move(localPods);
    }
    if (key != lastRoutes) {
      if (auto st = (*sandboxes)->setPeerRoutes(peers); !st) log::warn("routes: {}", st.error().message);
      else lastRoutes = key;
    }
  }
  for (auto& t : threads) t.join();
  return {};
}

}  // namespace ferry::agent
