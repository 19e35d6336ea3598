#include "cmd/options.h"

#include "agent/core/eviction.h"
#include "dns/cluster_dns.h"

#include <fmt/format.h>

#include <optional>

namespace ferry::cmd {
namespace {

Flag text(std::string name, std::string help, std::string& target) {
  return Flag{std::move(name), std::move(help), [&target] { return target; },
              [&target](const std::string& v) -> Status {
                target = v;
                return {};
              }};
}

Flag integer(std::string name, std::string help, int& target) {
  std::string flagName = name;
  return Flag{std::move(name), std::move(help), [&target] { return std::to_string(target); },
              [&target, flagName](const std::string& v) -> Status {
                try {
                  size_t used = 0;
                  int n = std::stoi(v, &used);
                  if (used != v.size()) throw std::invalid_argument(v);
                  target = n;
                  return {};
                } catch (const std::exception&) {
                  return fail(EINVAL, fmt::format("--{}: \"{}\" is not an integer", flagName, v));
                }
              }};
}

Flag boolean(std::string name, std::string help, bool& target) {
  std::string flagName = name;
  Flag f{std::move(name), std::move(help), [&target] { return target ? "true" : "false"; },
         [&target, flagName](const std::string& v) -> Status {
           if (v == "true" || v.empty()) target = true;
           else if (v == "false") target = false;
           else return fail(EINVAL, fmt::format("--{}: \"{}\" is not true or false", flagName, v));
           return {};
         }};
  f.isBool = true;
  return f;
}

// A DNS stub domain; repeatable, each use adds one.
Flag stubDomains(std::string name, std::string help, std::vector<std::string>& target) {
  std::string flagName = name;
  return Flag{std::move(name), std::move(help),
              [&target] {
                std::string all;
                for (const auto& s : target) all += (all.empty() ? "" : " ") + s;
                return all;
              },
              [&target, flagName](const std::string& v) -> Status {
                if (auto stub = dns::parseStubDomain(v); !stub)
                  return fail(EINVAL, fmt::format("--{}: {}", flagName, stub.error().message));
                target.push_back(v);
                return {};
              }};
}

// --eviction-hard: checked when parsed, so a typo stops the agent before it starts.
Flag evictionHard(std::string name, std::string help, std::string& target) {
  return Flag{std::move(name), std::move(help), [&target] { return target; },
              [&target](const std::string& v) -> Status {
                if (auto parsed = agent::parseEvictionThresholds(v); !parsed) return fail(parsed.error());
                target = v;
                return {};
              }};
}

Flag duration(std::string name, std::string help, std::string& target) {
  std::string flagName = name;
  return Flag{std::move(name), std::move(help), [&target] { return target; },
              [&target, flagName](const std::string& v) -> Status {
                if (auto parsed = agent::parseDurationSeconds(v); !parsed)
                  return fail(EINVAL, fmt::format("--{}: {}", flagName, parsed.error().message));
                target = v;
                return {};
              }};
}

void addShared(FlagTable& t, agent::AgentConfig& a) {
  t.push_back(text("node-name", "name of this node (default: hostname)", a.nodeName));
  t.push_back(text("node-ip", "address other nodes reach this one on (default: first global address)", a.nodeIP));
  t.push_back(text("cgroup-root", "cgroup subtree the agent owns under each hierarchy", a.cgroupRoot));
  t.push_back(text("run-dir", "runtime state: netns pins, sockets", a.runDir));
  t.push_back(text("bpffs-dir", "where BPF maps and links are pinned", a.bpffsDir));
  t.push_back(text("bridge", "node bridge that pod veths attach to", a.bridgeName));
  t.push_back(text("dns-upstream", "upstream DNS servers host:port[,...] (default: /etc/resolv.conf)", a.dnsUpstream));
  t.push_back(text("dns-listen", "node-local DNS listener address:port", a.dnsListen));
  t.push_back(stubDomains("dns-stub-domain",
                          "DOMAIN=IP[:PORT][,...]: names under DOMAIN go to these upstreams (repeatable)",
                          a.dnsStubDomains));
  t.push_back(text("proxy-mode", "Service load balancing: ebpf | nftables", a.proxyMode));
  t.push_back(text("system-reserved", "resources kept from pods, e.g. cpu=100m,memory=256Mi", a.systemReserved));
  t.push_back(text("kube-reserved", "resources kept for Ferry itself", a.kubeReserved));
  t.push_back(integer("max-pods", "pods this node accepts", a.maxPods));
  t.push_back(integer("pod-pids-limit", "pids.max of every pod", a.podPidsLimit));
  t.push_back(evictionHard("eviction-hard",
                           "hard eviction thresholds SIGNAL<QUANTITY|PERCENT[,...] (memory.available, "
                           "allocatableMemory.available, nodefs.available, nodefs.inodesFree); \"\" for none",
                           a.evictionHard));
  t.push_back(duration("eviction-pressure-transition-period",
                       "how long MemoryPressure/DiskPressure stay True after the last threshold crossing",
                       a.evictionPressureTransitionPeriod));
  t.push_back(integer("image-gc-high-threshold", "percent of the image filesystem used at which unused images are removed",
                      a.imageGcHighThresholdPercent));
  t.push_back(integer("image-gc-low-threshold", "percent of the image filesystem image GC frees down to",
                      a.imageGcLowThresholdPercent));
  t.push_back(integer("image-minimum-gc-age", "seconds an image is kept after its last use", a.imageMinimumGcAgeSeconds));
  t.push_back(integer("image-gc-period", "seconds between image GC checks", a.imageGcPeriodSeconds));
  t.push_back(text("registry-config", "registries file (JSON: plainHttpRegistries, credentialFile, caFile, ...)",
                   a.registryConfig));
}

}  // namespace

FlagTable serverFlags(cp::ServerConfig& s, agent::AgentConfig& a, bool& noAgent) {
  FlagTable t;
  t.push_back(text("data-dir", "certificates, kubeconfig, join token and the SQLite store", s.dataDir));
  t.push_back(text("listen", "API server address:port", s.listen));
  t.push_back(text("datastore", "sqlite | etcd://host:port[,host:port]", s.datastore));
  t.push_back(text("token-file", "join the cluster on a shared etcd datastore (the first server's data-dir/token)",
                   s.joinTokenFile));
  t.push_back(text("cluster-cidr", "pod addresses; each node gets a /24", s.clusterCIDR));
  t.push_back(text("service-cidr", "Service ClusterIPs", s.serviceCIDR));
  t.push_back(text("cluster-dns", "ClusterIP of the DNS Service", s.clusterDNS));
  t.push_back(text("cluster-domain", "DNS domain of the cluster", s.clusterDomain));
  t.push_back(text("advertise-address", "address put in certificates and the kubernetes Service", s.advertiseAddress));
  t.push_back(integer("node-monitor-grace-period", "seconds without a heartbeat before a node is NotReady",
                      s.nodeMonitorGracePeriodSeconds));
  t.push_back(integer("pod-eviction-timeout", "seconds pods tolerate an unreachable node", s.podEvictionTimeoutSeconds));
  t.push_back(integer("hpa-downscale-stabilization", "seconds of HPA scale-down stabilization",
                      s.hpaDownscaleStabilizationSeconds));
  t.push_back(boolean("no-agent", "do not run an agent for this node", noAgent));
  t.push_back(text("agent-data-dir", "data dir of the in-process agent", a.dataDir));
  addShared(t, a);
  return t;
}

FlagTable agentFlags(agent::AgentConfig& a) {
  FlagTable t;
  t.push_back(text("server", "API server URL", a.server));
  t.push_back(text("token-file", "file holding the node join token", a.tokenFile));
  t.push_back(text("kubeconfig", "credential to use instead of a join token", a.kubeconfig));
  t.push_back(text("data-dir", "images, pod state, logs", a.dataDir));
  t.push_back(text("listen", "agent API address:port (logs, exec, stats)", a.listen));
  t.push_back(text("cluster-cidr", "pod addresses of the whole cluster", a.clusterCIDR));
  t.push_back(text("service-cidr", "Service ClusterIPs", a.serviceCIDR));
  t.push_back(text("cluster-dns", "ClusterIP of the DNS Service", a.clusterDNS));
  t.push_back(text("cluster-domain", "DNS domain of the cluster", a.clusterDomain));
  addShared(t, a);
  return t;
}

Status parseFlags(const FlagTable& flags, const std::vector<std::string>& args, std::vector<std::string>& positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Flag* flag = nullptr;
    for (const auto& f : flags)
      if (f.name == name) flag = &f;
    if (flag == nullptr) return fail(EINVAL, fmt::format("unknown flag --{}", name));
    if (!value) {
      if (flag->isBool) value = "true";
      else if (i + 1 < args.size()) value = args[++i];
      else return fail(EINVAL, fmt::format("--{} needs a value", name));
    }
    if (auto st = flag->set(*value); !st) return st;
  }
  return {};
}

std::string flagHelp(const FlagTable& flags) {
  std::string out;
  for (const auto& f : flags)
    out += fmt::format("  --{:<28} {} (default \"{}\")\n", f.name + (f.isBool ? "" : " VALUE"), f.help, f.current());
  return out;
}

}  // namespace ferry::cmd
