// The Service proxy under a Deployment's scaling, end to end with stock kubectl on
// a one-node cluster (ebpf mode, the default): `kubectl scale` 3 -> 1 -> 4 while a
// client pod fetches http://web/ with nc (the Service by name, through cluster DNS) in a
// loop. Checked:
// - no fetch fails, across every change;
// - a pod in graceful termination (it traps SIGTERM and keeps serving for its
//   300 s grace) gets no new connection while other endpoints are ready, and so a
//   removed pod gets none after its endpoint is gone from the proxy.
//
// "After its endpoint is gone" without a clock: the client labels every fetch with
// the phase it read from a hostPath file before connecting; the test moves to the
// next phase only once the node's pinned BPF maps (read with bpftool) hold exactly
// the expected backends for the Service. A fetch labelled with that phase began
// after the maps changed, so it must reach one of those backends. Deadlines are
// generous; nothing is timed.
#include "tests/e2e/harness/cluster.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;
using ferry::e2e::Cluster;
using ferry::e2e::ClusterOptions;
using ferry::e2e::waitFor;
using Json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Each pod serves its name over HTTP on 8080. SIGTERM is trapped: the shell logs
// it and keeps httpd running until the grace period ends (the kill).
constexpr const char* kWeb = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 300
      containers:
      - name: web
        image: docker.io/library/busybox:1.35
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        command:
        - sh
        - -c
        - |
          mkdir -p /tmp/www && echo "$POD_NAME" > /tmp/www/index.html
          trap 'echo "SIGTERM: still serving"' TERM
          httpd -f -p 8080 -h /tmp/www &
          while true; do sleep 1; done
        ports:
        - {containerPort: 8080, name: http}
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
)";

// One line per fetch in /shared/log: "<phase> ok <pod>" or "<phase> fail <nc's words>".
// The HTTP request goes through busybox nc (one TCP connect per fetch; the body,
// the last line, is the pod's name): this busybox's `wget -O-` crashes (SIGSEGV).
constexpr const char* kClientTemplate = R"yaml(apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  restartPolicy: Never
  volumes:
  - {name: shared, hostPath: {path: SHARED_DIR, type: Directory}}
  containers:
  - name: client
    image: docker.io/library/busybox:1.35
    imagePullPolicy: Never
    volumeMounts:
    - {name: shared, mountPath: /shared}
    command:
    - sh
    - -c
    - |
      while [ ! -e /shared/stop ]; do
        p=$(cat /shared/phase)
        r=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 20 web 80 2>&1)
        case "$r" in
          *" 200 OK"*) echo "$p ok $(echo "$r" | tail -n 1)" >> /shared/log ;;
          *) echo "$p fail $(echo $r | tr -s ' \r\n' '___')" >> /shared/log ;;
        esac
      done
)yaml";

struct Fetch {
  std::string phase;
  bool ok = false;
  std::string what;  // the pod that answered, or why the fetch failed
};

std::vector<Fetch> readFetches(const std::string& path) {
  std::vector<Fetch> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // a line still being written
    std::istringstream s(line);
    Fetch f;
    std::string status;
    if (!(s >> f.phase >> status)) continue;
    f.ok = status == "ok";
    std::getline(s >> std::ws, f.what);
    out.push_back(f);
  }
  return out;
}

void writePhase(const std::string& dir, const std::string& phase) {
  {
    std::ofstream tmp(dir + "/phase.tmp");
    tmp << phase << "\n";
  }
  fs::rename(dir + "/phase.tmp", dir + "/phase");
}

struct WebPod {
  std::string name, ip;
  bool terminating = false;
  bool ready = false;
};

std::vector<WebPod> webPods(Cluster& cluster) {
  auto r = cluster.kubectl("get pods -l app=web -o json");
  std::vector<WebPod> pods;
  if (r.exitCode != 0) return pods;
  Json list = Json::parse(r.output, nullptr, false);
  if (list.is_discarded()) return pods;
  for (const auto& p : list.value("items", Json::array())) {
    WebPod w;
    w.name = p["metadata"].value("name", "");
    w.terminating = p["metadata"].contains("deletionTimestamp");
    auto status = p.value("status", Json::object());
    w.ip = status.value("podIP", "");
    for (const auto& c : status.value("conditions", Json::array()))
      if (c.value("type", "") == "Ready" && c.value("status", "") == "True") w.ready = true;
    pods.push_back(w);
  }
  return pods;
}

std::vector<uint8_t> hexBytes(const Json& array) {
  std::vector<uint8_t> out;
  for (const auto& h : array) out.push_back(static_cast<uint8_t>(std::stoul(h.get<std::string>(), nullptr, 16)));
  return out;
}

uint32_t le32(const std::vector<uint8_t>& b, size_t at) {
  return b[at] | b[at + 1] << 8 | b[at + 2] << 16 | static_cast<uint32_t>(b[at + 3]) << 24;
}

// The backends new connects to (clusterIP, port, TCP) can be given right now,
// read from the node's pinned maps (layouts: bpf/lb_maps.h). Empty set when the
// Service has no usable slot; nullopt-like error text in `error` when unreadable.
std::set<std::string> programmedBackends(const std::string& bpffsDir, const std::string& clusterIP, int port,
                                         std::string& error) {
  std::set<std::string> out;
  auto dump = [&](const std::string& map) {
    auto r = ferry::e2e::sh("bpftool -j map dump pinned " + bpffsDir + "/" + map, 60s);
    Json j = Json::parse(r.output, nullptr, false);
    if (r.exitCode != 0 || !j.is_array()) error = "bpftool " + map + ": " + r.output;
    return j.is_array() ? j : Json::array();
  };
  Json services = dump("lb4_services"), backends = dump("lb4_backends");
  uint8_t address[4];
  inet_pton(AF_INET, clusterIP.c_str(), address);
  // lb4_key: address[4] port[2] (network order) backend_slot (u16) protocol pad[3].
  std::map<uint16_t, std::vector<uint8_t>> slots;  // slot -> lb4_service bytes
  for (const auto& e : services) {
    auto k = hexBytes(e["key"]);
    if (k.size() < 9 || std::memcmp(k.data(), address, 4) != 0 || (k[4] << 8 | k[5]) != port || k[8] != 6) continue;
    slots[static_cast<uint16_t>(k[6] | k[7] << 8)] = hexBytes(e["value"]);
  }
  std::map<uint32_t, std::string> byId;  // lb4_backend: address[4] port[2] protocol pad
  for (const auto& e : backends) {
    auto k = hexBytes(e["key"]), v = hexBytes(e["value"]);
    if (k.size() < 4 || v.size() < 4) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, v.data(), text, sizeof text);
    byId[le32(k, 0)] = text;
  }
  if (!slots.count(0)) return out;
  uint32_t count = le32(slots[0], 4);  // lb4_service: backend_id count service_id ...
  for (uint32_t i = 1; i <= count; ++i) {
    if (!slots.count(static_cast<uint16_t>(i))) {
      error = "slot " + std::to_string(i) + " of " + std::to_string(count) + " missing";
      continue;
    }
    uint32_t id = le32(slots[static_cast<uint16_t>(i)], 0);
    if (byId.count(id)) out.insert(byId[id]);
    else error = "backend id " + std::to_string(id) + " missing";
  }
  return out;
}

std::string describe(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : " ") + x;
  return "{" + out + "}";
}

}  // namespace

TEST(ProxyScalingE2E, ScaleThreeToOneToFourUnderAConnectLoop) {
  if (auto reason = ferry::e2e::e2eUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  if (ferry::e2e::sh("command -v bpftool").exitCode != 0) GTEST_SKIP() << "bpftool is not installed: cannot read the proxy's maps";
  Cluster cluster(ClusterOptions{});
  ASSERT_EQ(cluster.start(), "");
  ASSERT_EQ(cluster.importBusybox(), "");
  const std::string shared = cluster.workDir() + "/proxy-shared";
  fs::create_directories(shared);
  const std::string bpffs = "/sys/fs/bpf/" + cluster.cgroupRoot(1);

  auto applied = cluster.kubectl("apply -f -", 60s, kWeb);
  ASSERT_EQ(applied.exitCode, 0) << applied.output;
  auto clusterIP = cluster.kubectl("get svc web -o jsonpath={.spec.clusterIP}");
  ASSERT_EQ(clusterIP.exitCode, 0) << clusterIP.output;

  std::vector<WebPod> pods;
  std::set<std::string> programmed;
  std::string mapError;
  // Waits until the pods are `ready` non-terminating ones all Ready and the
  // maps give exactly their addresses; returns them by name.
  auto settle = [&](size_t ready) -> std::map<std::string, std::string> {
    std::map<std::string, std::string> byName;
    bool settled = waitFor([&] {
      pods = webPods(cluster);
      std::set<std::string> want;
      byName.clear();
      for (const auto& p : pods) {
        if (p.terminating) continue;
        if (!p.ready || p.ip.empty()) return false;
        want.insert(p.ip);
        byName[p.name] = p.ip;
      }
      if (want.size() != ready) return false;
      mapError.clear();
      programmed = programmedBackends(bpffs, clusterIP.output, 80, mapError);
      return mapError.empty() && programmed == want;
    }, 240s);
    EXPECT_TRUE(settled) << "wanted " << ready << " ready pods in the maps; maps: " << describe(programmed) << " "
                         << mapError << "\n" << cluster.kubectl("get pods -o wide").output
                         << cluster.kubectl("get endpointslices -o yaml").output;
    return settled ? byName : std::map<std::string, std::string>{};
  };

  auto three = settle(3);
  ASSERT_EQ(three.size(), 3u);
  writePhase(shared, "p0");
  std::string client = kClientTemplate;
  client.replace(client.find("SHARED_DIR"), 10, shared);
  auto started = cluster.kubectl("apply -f -", 60s, client);
  ASSERT_EQ(started.exitCode, 0) << started.output;
  // Count fetches of `phase` per answering pod.
  auto answers = [&](const std::string& phase) {
    std::map<std::string, int> n;
    for (const auto& f : readFetches(shared + "/log"))
      if (f.phase == phase && f.ok) n[f.what]++;
    return n;
  };
  ASSERT_TRUE(waitFor([&] { return answers("p0").size() == 3; }, 240s))
      << "the client did not reach all three pods\n" << cluster.kubectl("describe pod client").output;

  // 3 -> 1: two pods terminate (and keep serving); only the third may get new connects.
  auto scaled = cluster.kubectl("scale deployment web --replicas=1");
  ASSERT_EQ(scaled.exitCode, 0) << scaled.output;
  auto one = settle(1);
  ASSERT_EQ(one.size(), 1u);
  std::map<std::string, std::string> terminating;
  for (const auto& p : pods)
    if (p.terminating) terminating[p.name] = p.ip;
  ASSERT_EQ(terminating.size(), 2u);
  writePhase(shared, "p1");
  EXPECT_TRUE(waitFor([&] {
    int total = 0;
    for (auto& [_, n] : answers("p1")) total += n;
    return total >= 30;
  }, 240s));

  // 1 -> 4 while the two are still in their grace period. Until the maps hold
  // all four (phase p2), new pods may or may not answer yet; the terminating two
  // must not.
  writePhase(shared, "p1up");
  scaled = cluster.kubectl("scale deployment web --replicas=4");
  ASSERT_EQ(scaled.exitCode, 0) << scaled.output;
  auto four = settle(4);
  ASSERT_EQ(four.size(), 4u);
  writePhase(shared, "p2");
  EXPECT_TRUE(waitFor([&] {
    auto n = answers("p2");
    if (n.size() < 4) return false;
    for (auto& [_, k] : n)
      if (k < 3) return false;
    return true;
  }, 240s)) << "not every ready pod answered in phase p2";

  // The terminating pods still exist and still serve (so their absence above is
  // the proxy's doing): fetched directly by pod address from the node.
  for (const auto& [name, ip] : terminating) {
    auto still = cluster.kubectl("get pod " + name + " -o jsonpath={.metadata.deletionTimestamp}");
    EXPECT_EQ(still.exitCode, 0) << name << " is gone before its grace period ended: " << still.output;
    auto direct = cluster.inNode(1, "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 20 " + ip + " 8080", 60s);
    EXPECT_EQ(direct.exitCode, 0) << name << " at " << ip << " no longer serves: " << direct.output;
    EXPECT_NE(direct.output.find(name), std::string::npos) << direct.output;
  }

  { std::ofstream(shared + "/stop") << "\n"; }
  std::vector<Fetch> fetches = readFetches(shared + "/log");
  int failed = 0;
  std::map<std::string, std::map<std::string, int>> byPhase;
  for (const auto& f : fetches) {
    if (!f.ok) {
      if (++failed <= 5) ADD_FAILURE() << "fetch failed in phase " << f.phase << ": " << f.what;
      continue;
    }
    byPhase[f.phase][f.what]++;
  }
  EXPECT_EQ(failed, 0) << "of " << fetches.size() << " fetches";
  for (const auto& [pod, n] : byPhase["p1"])
    EXPECT_TRUE(one.count(pod)) << pod << " got " << n << " connects in phase p1 (only " << one.begin()->first
                                << " was ready)";
  for (const auto& [pod, n] : byPhase["p1up"])
    EXPECT_FALSE(terminating.count(pod)) << "terminating " << pod << " got " << n << " new connects while scaling up";
  for (const auto& [pod, n] : byPhase["p2"]) {
    EXPECT_TRUE(four.count(pod)) << pod << " got " << n << " connects in phase p2";
    EXPECT_FALSE(terminating.count(pod)) << "terminating " << pod << " got " << n << " new connects while others were ready";
  }
  std::printf("fetches: %zu in all, %d failed; by phase:", fetches.size(), failed);
  for (const auto& [phase, n] : byPhase) {
    std::printf(" %s {", phase.c_str());
    for (const auto& [pod, k] : n) std::printf(" %s:%d", pod.c_str(), k);
    std::printf(" }");
  }
  std::printf("\n");
}
