// Small helpers the multi-node e2e tests share: where a Deployment's pods run,
// and what a client pod's requests answered. Everything goes through stock kubectl
// (and the node's container log files for a client's output).
#pragma once

#include "tests/e2e/harness/cluster.h"

#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::e2e {

struct PodPlacement {
  std::string name;
  std::string node;
  std::string ip;
  bool ready = false;
  bool terminating = false;
};

// The pods matching `selector` as `kubectl get pods` reports them.
inline std::vector<PodPlacement> podsOf(Cluster& cluster, const std::string& selector) {
  auto r = cluster.kubectl(
      "get pods -l " + selector +
      " -o jsonpath='{range .items[*]}{.metadata.name}|{.spec.nodeName}|{.status.podIP}"
      "|{.status.conditions[?(@.type==\"Ready\")].status}|{.metadata.deletionTimestamp}{\"\\n\"}{end}'");
  std::vector<PodPlacement> pods;
  if (r.exitCode != 0) return pods;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::istringstream f(line);
    for (std::string field; std::getline(f, field, '|');) fields.push_back(field);
    if (fields.size() < 3 || fields[0].empty()) continue;
    fields.resize(5);
    pods.push_back(PodPlacement{fields[0], fields[1], fields[2], fields[3] == "True", !fields[4].empty()});
  }
  return pods;
}

// Ready, not terminating pods per node.
inline std::map<std::string, int> readyPerNode(const std::vector<PodPlacement>& pods) {
  std::map<std::string, int> perNode;
  for (const auto& p : pods)
    if (p.ready && !p.terminating) ++perNode[p.node];
  return perNode;
}

inline std::string describe(const std::vector<PodPlacement>& pods) {
  std::string s;
  for (const auto& p : pods)
    s += p.name + " on " + p.node + " ip " + p.ip + (p.ready ? " ready" : " not-ready") +
         (p.terminating ? " terminating" : "") + "\n";
  return s;
}

// Ready endpoint addresses of a Service's EndpointSlices.
inline std::vector<std::string> readyEndpoints(Cluster& cluster, const std::string& service) {
  auto r = cluster.kubectl("get endpointslices -l kubernetes.io/service-name=" + service +
                           " -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]} {.conditions.ready}{\"\\n\"}{end}'");
  std::vector<std::string> ips;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string ip, ready;
    f >> ip >> ready;
    if (!ip.empty() && ready == "true") ips.push_back(ip);
  }
  return ips;
}

// (busybox's `wget -T` crashes in Debian's build: `timeout` bounds each request.)
// A client pod pinned to `node` that first asks each of `podIps` directly on
// :8080 (printing "ip <address> <answer>"), then asks `url` `requests` times
// (printing each answer), then prints DONE.
inline std::string clientPodManifest(const std::string& name, const std::string& node,
                                     const std::vector<std::string>& podIps, const std::string& url, int requests) {
  std::string ips;
  for (const auto& ip : podIps) ips += ip + " ";
  return "apiVersion: v1\n"
         "kind: Pod\n"
         "metadata:\n"
         "  name: " + name + "\n"
         "spec:\n"
         "  restartPolicy: Never\n"
         "  nodeSelector: {kubernetes.io/hostname: " + node + "}\n"
         "  containers:\n"
         "  - name: client\n"
         "    image: docker.io/library/busybox:1.35\n"
         "    imagePullPolicy: Never\n"
         "    command:\n"
         "    - sh\n"
         "    - -c\n"
         "    - |\n"
         "      for ip in " + ips + "; do echo \"ip $ip $(timeout 5 wget -qO- http://$ip:8080 || echo FAILED)\"; done\n"
         "      for i in $(seq " + std::to_string(requests) + "); do timeout 5 wget -qO- " + url + " || echo FAILED; done\n"
         "      echo DONE\n";
}

// Answers by the pod that gave them (lines starting with `prefix`, e.g. "app-"),
// from a client's output; "ip ..." lines are left out.
inline std::map<std::string, int> answersByBackend(const std::string& output, const std::string& prefix) {
  std::map<std::string, int> perBackend;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(prefix, 0) == 0) ++perBackend[line];
  return perBackend;
}

// The answer each pod IP gave a client ("ip <address> <answer>" lines).
inline std::map<std::string, std::string> answersByIp(const std::string& output) {
  std::map<std::string, std::string> byIp;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("ip ", 0) != 0) continue;
    std::istringstream f(line);
    std::string tag, ip, answer;
    f >> tag >> ip >> answer;
    byIp[ip] = answer;
  }
  return byIp;
}

}  // namespace ferry::e2e
