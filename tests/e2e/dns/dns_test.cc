// Cluster DNS from inside a pod, on a one-node cluster with the busybox image:
// the pod's /etc/resolv.conf, a ClusterIP Service by short name, with its
// namespace and in full, AAAA of an IPv4-only Service (NODATA), a headless
// Service's per-pod names, SRV of a named port, PTR of a ClusterIP and of a pod
// with a hostname, a pod name <a-b-c-d>.<ns>.pod.<domain>, NXDOMAIN, and an
// outside name forwarded to a test upstream. Then, with dig from the node, a
// Service created appears in DNS and is gone once deleted. The upstream is dnsmasq started in
// node 1's network namespace on 127.0.0.1:5353 (the address the harness gives
// agents as --dns-upstream), answering outside.test and NXDOMAIN for every
// other name, as a real upstream would; nothing leaves the node's namespace.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using namespace std::chrono_literals;

namespace {

constexpr const char* kBackends = R"(apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web}
spec:
  hostname: web-0
  subdomain: hl
  containers:
  - name: web
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    ports:
    - {containerPort: 8080, name: http}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  hostname: web-1
  subdomain: hl
  containers:
  - name: web
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    ports:
    - {containerPort: 8080, name: http}
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: hl
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
)";

// Each query's output is framed by "== <name>" and "rc=<exit code>".
constexpr const char* kClient = R"(apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      echo "== resolv.conf"; cat /etc/resolv.conf; echo "rc=$?"
      q() { echo "== $*"; nslookup "$@"; echo "rc=$?"; }
      # busybox nslookup searches only dotless names; wget resolves through
      # libc with the search path and ndots:5, as applications do.
      w() { echo "== wget $1"; timeout 5 wget -qO- "http://$1/" 2>&1; echo "rc=$?"; }
      q app
      w app.default
      q app.default.svc.cluster.local
      q -type=aaaa app.default.svc.cluster.local.
      q CLUSTER_IP
      q WEB0_IP
      q WEB0_DASHED.default.pod.cluster.local
      q hl.default.svc.cluster.local
      q web-0.hl.default.svc.cluster.local
      q web-1.hl.default.svc.cluster.local
      q -type=srv _http._tcp.app.default.svc.cluster.local
      q -type=srv _http._tcp.hl.default.svc.cluster.local
      q nosuch.default.svc.cluster.local
      q www.outside.test
      echo DONE
)";

// The part of `output` between "== <name>" and the next "rc=" line (inclusive).
std::string section(const std::string& output, const std::string& name) {
  auto start = output.find("== " + name + "\n");
  if (start == std::string::npos) return {};
  auto end = output.find("rc=", start);
  if (end == std::string::npos) return output.substr(start);
  auto eol = output.find('\n', end);
  return output.substr(start, eol == std::string::npos ? std::string::npos : eol - start);
}

// The test upstream: dnsmasq in node 1's namespace, killed by its pid at the end.
class TestUpstream {
 public:
  std::string start(Cluster& cluster) {
    pidFile_ = cluster.workDir() + "/dnsmasq.pid";
    auto r = cluster.inNode(1,
        "dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --no-poll --user=root --bind-interfaces "
        "--listen-address=127.0.0.1 --port=5353 --address=/outside.test/192.0.2.77 --address=/#/ --pid-file=" + pidFile_ +
        " </dev/null >" + cluster.workDir() + "/dnsmasq.out 2>&1 || { cat " + cluster.workDir() + "/dnsmasq.out; exit 1; }");
    if (r.exitCode != 0) return "dnsmasq: " + r.output;
    std::ifstream in(pidFile_);
    in >> pid_;
    return pid_ > 0 ? "" : "dnsmasq wrote no pid";
  }
  ~TestUpstream() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
  }

 private:
  std::string pidFile_;
  pid_t pid_ = -1;
};

}  // namespace

TEST(ClusterDnsE2E, BusyboxNslookupInAPod) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  if (::access("/usr/sbin/dnsmasq", X_OK) != 0) GTEST_SKIP() << "dnsmasq (dnsmasq-base) is not installed: no test upstream";
  ClusterOptions options;
  options.nodes = 1;
  Cluster cluster(options);
  ASSERT_EQ(cluster.start(), "");
  TestUpstream upstream;
  ASSERT_EQ(upstream.start(cluster), "");
  ASSERT_EQ(cluster.importBusybox(), "");

  auto applied = cluster.kubectl("apply -f -", 60s, kBackends);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  std::vector<std::string> podIPs;
  bool endpoints = ferry::e2e::waitFor([&] {
    auto r = cluster.kubectl(
        "get endpointslices -l kubernetes.io/service-name=hl -o jsonpath={.items[*].endpoints[*].addresses[0]}");
    std::istringstream s(r.output);
    podIPs.clear();
    for (std::string a; s >> a;) podIPs.push_back(a);
    return podIPs.size() == 2;
  }, 120s);
  ASSERT_TRUE(endpoints) << cluster.kubectl("get pods -o wide").output << cluster.kubectl("get endpointslices -o yaml").output;
  auto clusterIP = cluster.kubectl("get svc app -o jsonpath={.spec.clusterIP}");
  ASSERT_EQ(clusterIP.exitCode, 0) << clusterIP.output;
  auto ipOf = [&](const std::string& pod) {
    return cluster.kubectl("get pod " + pod + " -o jsonpath={.status.podIP}").output;
  };
  std::string web0 = ipOf("web-0"), web1 = ipOf("web-1");
  ASSERT_FALSE(web0.empty());
  ASSERT_FALSE(web1.empty());

  // The client's script asks for the addresses found above by name.
  std::string clientYaml = kClient;
  std::string web0Dashed = web0;
  std::replace(web0Dashed.begin(), web0Dashed.end(), '.', '-');
  for (auto [placeholder, value] : {std::pair<std::string, std::string>{"CLUSTER_IP", clusterIP.output},
                                    {"WEB0_IP", web0}, {"WEB0_DASHED", web0Dashed}})
    for (size_t at; (at = clientYaml.find(placeholder)) != std::string::npos;)
      clientYaml.replace(at, placeholder.size(), value);
  auto client = cluster.kubectl("apply -f -", 60s, clientYaml);
  ASSERT_EQ(client.exitCode, 0) << client.output;
  bool done = ferry::e2e::waitFor(
      [&] { return cluster.podOutput(1, "client").find("DONE") != std::string::npos; }, 180s);
  std::string out = cluster.podOutput(1, "client");
  ASSERT_TRUE(done) << out << "\n" << cluster.kubectl("describe pod client").output;

  // resolv.conf: kube-dns's ClusterIP, the Kubernetes search path, ndots:5.
  std::string resolv = section(out, "resolv.conf");
  EXPECT_NE(resolv.find("nameserver 10.43.0.10"), std::string::npos) << resolv;
  EXPECT_TRUE(std::regex_search(resolv, std::regex("search default\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local")))
      << resolv;
  EXPECT_NE(resolv.find("ndots:5"), std::string::npos) << resolv;

  // Short name through the search path, and the full name: the ClusterIP.
  for (const char* name : {"app", "app.default.svc.cluster.local"}) {
    std::string s = section(out, name);
    EXPECT_NE(s.find("Name:\tapp.default.svc.cluster.local"), std::string::npos) << s;
    EXPECT_NE(s.find("Address: " + clusterIP.output + "\n"), std::string::npos) << s;
  }
  // With the namespace but not the domain, through the search path: wget
  // reaches the ClusterIP (nothing listens on the pods: refused, with the address).
  std::string withNamespace = section(out, "wget app.default");
  EXPECT_NE(withNamespace.find("(" + clusterIP.output + ")"), std::string::npos) << withNamespace;
  EXPECT_EQ(withNamespace.find("bad address"), std::string::npos) << withNamespace;

  // An IPv4-only Service has no AAAA: NODATA (busybox prints no address and
  // exits 0), not NXDOMAIN (which exits 1).
  std::string aaaa = section(out, "-type=aaaa app.default.svc.cluster.local.");
  EXPECT_EQ(aaaa.find("Address: "), std::string::npos) << aaaa;
  EXPECT_EQ(aaaa.find("NXDOMAIN"), std::string::npos) << aaaa;
  EXPECT_NE(aaaa.find("rc=0"), std::string::npos) << aaaa;

  // Reverse lookups: the ClusterIP names its Service, a headless pod its hostname's name.
  std::string ptr = section(out, clusterIP.output);
  EXPECT_TRUE(std::regex_search(ptr, std::regex("name = app\\.default\\.svc\\.cluster\\.local"))) << ptr;
  std::string podPtr = section(out, web0);
  EXPECT_TRUE(std::regex_search(podPtr, std::regex("name = web-0\\.hl\\.default\\.svc\\.cluster\\.local"))) << podPtr;

  // A pod by its dashed address: the address itself.
  std::string podName = section(out, web0Dashed + ".default.pod.cluster.local");
  EXPECT_NE(podName.find("Address: " + web0 + "\n"), std::string::npos) << podName;

  // The headless Service: one address per ready pod, and each pod by its hostname.
  std::string headless = section(out, "hl.default.svc.cluster.local");
  EXPECT_NE(headless.find("Address: " + web0 + "\n"), std::string::npos) << headless;
  EXPECT_NE(headless.find("Address: " + web1 + "\n"), std::string::npos) << headless;
  std::string perPod0 = section(out, "web-0.hl.default.svc.cluster.local");
  EXPECT_NE(perPod0.find("Address: " + web0 + "\n"), std::string::npos) << perPod0;
  EXPECT_EQ(perPod0.find("Address: " + web1 + "\n"), std::string::npos) << perPod0;
  std::string perPod1 = section(out, "web-1.hl.default.svc.cluster.local");
  EXPECT_NE(perPod1.find("Address: " + web1 + "\n"), std::string::npos) << perPod1;

  // SRV of the named port: the Service's port and name; per pod for the headless one.
  std::string srv = section(out, "-type=srv _http._tcp.app.default.svc.cluster.local");
  EXPECT_TRUE(std::regex_search(srv, std::regex("service = 0 100 80 app\\.default\\.svc\\.cluster\\.local"))) << srv;
  std::string srvHeadless = section(out, "-type=srv _http._tcp.hl.default.svc.cluster.local");
  EXPECT_TRUE(std::regex_search(srvHeadless, std::regex("8080 web-0\\.hl\\.default\\.svc\\.cluster\\.local"))) << srvHeadless;
  EXPECT_TRUE(std::regex_search(srvHeadless, std::regex("8080 web-1\\.hl\\.default\\.svc\\.cluster\\.local"))) << srvHeadless;

  // A name that does not exist in the cluster domain.
  std::string missing = section(out, "nosuch.default.svc.cluster.local");
  EXPECT_NE(missing.find("NXDOMAIN"), std::string::npos) << missing;
  EXPECT_NE(missing.find("rc=1"), std::string::npos) << missing;

  // Outside the cluster domain: forwarded to the test upstream.
  std::string outside = section(out, "www.outside.test");
  EXPECT_NE(outside.find("Address: 192.0.2.77\n"), std::string::npos) << outside << "\n" << cluster.serverLog();

  // A Service created appears, and once deleted is gone (NXDOMAIN), asked from
  // the node itself at its DNS listener (the gateway of its pod CIDR). The
  // zone is rebuilt on every watch event; the times are printed, not asserted.
  auto podCidr = cluster.kubectl("get node " + cluster.nodeName(1) + " -o jsonpath={.spec.podCIDR}");
  ASSERT_EQ(podCidr.exitCode, 0) << podCidr.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(podCidr.output, m, std::regex("^(\\d+\\.\\d+\\.\\d+\\.)(\\d+)/"))) << podCidr.output;
  std::string listener = m[1].str() + std::to_string(std::stoi(m[2].str()) + 1);
  auto dig = [&](const std::string& name) {
    return cluster.inNode(1, "dig +time=2 +tries=1 @" + listener + " " + name + " A", 30s).output;
  };
  constexpr const char* kLate = R"(apiVersion: v1
kind: Service
metadata:
  name: late
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80}
)";
  EXPECT_NE(dig("late.default.svc.cluster.local").find("status: NXDOMAIN"), std::string::npos);
  auto created = std::chrono::steady_clock::now();
  auto lateApplied = cluster.kubectl("apply -f -", 60s, kLate);
  ASSERT_EQ(lateApplied.exitCode, 0) << lateApplied.output;
  auto lateIP = cluster.kubectl("get svc late -o jsonpath={.spec.clusterIP}");
  ASSERT_EQ(lateIP.exitCode, 0) << lateIP.output;
  std::string answer;
  bool visible = ferry::e2e::waitFor([&] {
    answer = dig("late.default.svc.cluster.local");
    return std::regex_search(answer, std::regex("late\\.default\\.svc\\.cluster\\.local\\.\\s+5\\s+IN\\s+A\\s+" +
                                                std::regex_replace(lateIP.output, std::regex("\\."), "\\.")));
  }, 60s);
  EXPECT_TRUE(visible) << answer;
  auto seenMs = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - created).count();
  auto deleted = cluster.kubectl("delete svc late", 60s);
  ASSERT_EQ(deleted.exitCode, 0) << deleted.output;
  auto deletedAt = std::chrono::steady_clock::now();
  bool gone = ferry::e2e::waitFor([&] {
    answer = dig("late.default.svc.cluster.local");
    return answer.find("status: NXDOMAIN") != std::string::npos;
  }, 60s);
  EXPECT_TRUE(gone) << answer;
  auto goneMs = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - deletedAt).count();
  std::printf("late Service: in DNS %lld ms after kubectl apply began, gone %lld ms after kubectl delete returned (TTL 5 s)\n",
              static_cast<long long>(seenMs), static_cast<long long>(goneMs));
}
