// Everything `ferry agent` (and the agent inside `ferry server`) is configured with.
#pragma once

#include <string>
#include <vector>

namespace ferry::agent {

struct AgentConfig {
  std::string server = "https://127.0.0.1:6443";
  std::string tokenFile;               // node join token
  std::string kubeconfig;              // alternative to tokenFile: a ready credential (in-process agent)
  std::string nodeName;                // default: hostname
  std::string nodeIP;                  // default: first global address
  std::string dataDir = "/var/lib/ferry/agent";
  std::string runDir = "/run/ferry";   // netns pins, sockets
  std::string cgroupRoot = "ferry";    // subtree under each cgroup hierarchy; never written outside
  std::string bpffsDir = "/sys/fs/bpf/ferry";
  std::string bridgeName = "ferry0";
  std::string clusterCIDR = "10.42.0.0/16";
  std::string serviceCIDR = "10.43.0.0/16";
  std::string clusterDNS = "10.43.0.10";
  std::string clusterDomain = "cluster.local";
  std::string dnsUpstream;             // host:port[,host:port]; empty: the node's resolv.conf
  std::string dnsListen = "127.0.0.53:53"; // where the node-local DNS listens; the DNS ClusterIP is steered here
  std::vector<std::string> dnsStubDomains; // "corp.example=10.0.0.53:53[,...]": that domain goes to its own upstreams
  std::string proxyMode = "ebpf";      // ebpf | nftables
  std::string systemReserved;          // e.g. cpu=100m,memory=256Mi
  std::string kubeReserved;
  int maxPods = 110;
  int podPidsLimit = 4096;
  std::string listen = "0.0.0.0:10250"; // agent API (logs, exec, stats)
  std::string evictionHard = "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%";  // the kubelet's defaults
  std::string evictionPressureTransitionPeriod = "5m";  // how long a pressure condition stays after its threshold
  // Image GC on the filesystem of <dataDir>/images, as the kubelet's flags of the same names.
  int imageGcHighThresholdPercent = 85;
  int imageGcLowThresholdPercent = 80;
  int imageMinimumGcAgeSeconds = 120;
  int imageGcPeriodSeconds = 300;      // the kubelet checks every 5 minutes
  std::string registryConfig = "/etc/ferry/registries.json"; // plain-HTTP registries, node credentials; absent: defaults
};

}  // namespace ferry::agent
