// Two `ferry server --no-agent` processes on one real etcd (loopback): the API
// on both, the scheduler and controllers only on the holder of the
// kube-system/ferry-controllers Lease. Under a write load through both API
// servers the leader is killed with SIGKILL: the other takes the Lease, binds a
// new pod to a fake Node, and every write acknowledged before the kill is there.
// Then the new leader is frozen (SIGSTOP) until it loses the Lease: on SIGCONT it
// stops its loops and keeps serving the API.
//
// Joining: the second server starts on a fresh data dir with --token-file naming
// the first one's token; it takes the cluster CA from the datastore (encrypted
// with the token, see controlplane-lite/cluster_bootstrap.h) and issues its own
// serving and admin certificates from it. Without the token it refuses to start.
#include "tests/e2e/apiserver/server_process.h"
#include "tests/unit/store/etcd_process.h"
#include "tests/unit/store/store_fixture.h"

#include <gtest/gtest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <ctime>
#include <fstream>
#include <thread>

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using ferry::e2e::ApiClient;
using ferry::e2e::ServerProcess;
using ferry::e2e::WriteLoad;

namespace {

constexpr const char* kLeasePath = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ferry-controllers";
constexpr const char* kNode = "fake-1";

std::string utcNow(const char* format) {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, format, std::gmtime(&t));
  return buf;
}

bool waitFor(const std::function<bool()>& condition, std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return condition();
}

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The pid at the end of the Lease's holderIdentity ("<hostname>-<pid>"), or 0.
pid_t leaderPid(ApiClient& client) {
  auto reply = client.get(kLeasePath);
  if (reply.status != 200) return 0;
  Json lease = Json::parse(reply.body, nullptr, false);
  if (!lease.is_object()) return 0;
  std::string holder = lease["spec"].value("holderIdentity", "");
  auto dash = holder.rfind('-');
  return dash == std::string::npos ? 0 : std::atoi(holder.c_str() + dash + 1);
}

std::string nodeNameOf(ApiClient& client, const std::string& pod) {
  auto reply = client.get("/api/v1/namespaces/default/pods/" + pod);
  if (reply.status != 200) return {};
  Json p = Json::parse(reply.body, nullptr, false);
  return p.is_object() ? p["spec"].value("nodeName", "") : "";
}

std::string createPod(ApiClient& client, const std::string& name) {
  Json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", {{"name", name}}},
              {"spec", {{"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  auto reply = client.post("/api/v1/namespaces/default/pods", pod.dump());
  return reply.status == 201 ? std::string() : fmt::format("create pod {}: {} {}{}", name, reply.status, reply.body, reply.error);
}

// A Node the scheduler can place pods on (Ready, with room) and the Lease that keeps it Ready.
std::string createFakeNode(ApiClient& client) {
  Json node = {{"apiVersion", "v1"},
               {"kind", "Node"},
               {"metadata", {{"name", kNode}, {"labels", {{"kubernetes.io/hostname", kNode}}}}}};
  auto made = client.post("/api/v1/nodes", node.dump());
  if (made.status != 201) return "create node: " + std::to_string(made.status) + " " + made.body + made.error;
  Json status = {{"status",
                  {{"allocatable", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
                   {"capacity", {{"cpu", "4"}, {"memory", "8Gi"}, {"pods", "110"}}},
                   {"conditions",
                    {{{"type", "Ready"}, {"status", "True"}, {"reason", "KubeletReady"},
                      {"lastHeartbeatTime", utcNow("%Y-%m-%dT%H:%M:%SZ")},
                      {"lastTransitionTime", utcNow("%Y-%m-%dT%H:%M:%SZ")}}}}}}};
  auto patched = client.request("PATCH", std::string("/api/v1/nodes/") + kNode + "/status", status.dump(),
                                "application/merge-patch+json");
  if (patched.status != 200) return "node status: " + std::to_string(patched.status) + " " + patched.body;
  Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata", {{"name", kNode}, {"namespace", "kube-node-lease"}}},
                {"spec", {{"holderIdentity", kNode}, {"leaseDurationSeconds", 600},
                          {"renewTime", utcNow("%Y-%m-%dT%H:%M:%S.000000Z")}}}};
  auto leased = client.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease.dump());
  if (leased.status != 201) return "node lease: " + std::to_string(leased.status) + " " + leased.body;
  return {};
}

std::string tail(const std::string& text, std::size_t n = 4000) {
  return text.size() > n ? text.substr(text.size() - n) : text;
}

}  // namespace

TEST(ApiServerHa, LeaderKilledUnderWriteLoadSurvivorSchedulesAndKeepsEveryAcknowledgedWrite) {
  const char* binary = std::getenv("FERRY_BINARY");
  if (!binary || !fs::exists(binary)) GTEST_SKIP() << "FERRY_BINARY not built";
  if (!ferry::cp::testing::EtcdProcess::available()) GTEST_SKIP() << "etcd (Debian etcd-server) not installed";

  ferry::cp::testing::EtcdProcess etcd;
  ASSERT_TRUE(etcd.start()) << etcd.error();
  fs::path dir = ferry::cp::testing::makeTempDir("e2e-ha");
  std::string datastore = "etcd://" + etcd.endpoint();
  auto a = std::make_unique<ServerProcess>(binary, dir / "a", datastore);
  auto b = std::make_unique<ServerProcess>(binary, dir / "b", datastore);
  auto logs = [&] { return "--- server a:\n" + tail(a->log()) + "\n--- server b:\n" + tail(b->log()); };

  ASSERT_EQ(a->start(), "");
  {
    // A server on a fresh data dir without the token would make a second CA: refused.
    ServerProcess stray(binary, dir / "stray", datastore);
    std::string why = stray.start(std::chrono::seconds(60));
    EXPECT_NE(why.find("exited during start"), std::string::npos) << why;
    EXPECT_NE(why.find("--token-file"), std::string::npos) << why;
  }
  b->setExtraArgs({"--token-file", (a->dataDir() / "token").string()});
  ASSERT_EQ(b->start(), "");
  {
    std::ifstream ca1(a->dataDir() / "tls" / "ca.crt"), ca2(b->dataDir() / "tls" / "ca.crt");
    std::string x(std::istreambuf_iterator<char>(ca1), {}), y(std::istreambuf_iterator<char>(ca2), {});
    EXPECT_FALSE(x.empty());
    EXPECT_EQ(x, y) << "the joined server signs with the cluster's CA";
  }

  // One cluster: b's admin certificate (issued by the shared CA) is accepted by a.
  ApiClient viaA(b->dataDir(), a->url());
  ApiClient viaB(b->dataDir(), b->url());
  ASSERT_EQ(viaA.get("/api/v1/namespaces/default").status, 200);

  // Exactly one of them leads; the Lease names it.
  pid_t leader = 0;
  ASSERT_TRUE(waitFor([&] { leader = leaderPid(viaB); return leader == a->pid() || leader == b->pid(); },
                      std::chrono::seconds(60)))
      << "no server holds " << kLeasePath << ": " << viaB.get(kLeasePath).body << "\n" << logs();
  ServerProcess& first = leader == a->pid() ? *a : *b;
  ServerProcess& second = leader == a->pid() ? *b : *a;
  ApiClient viaSecond(second.dataDir(), second.url());
  std::printf("leader: %s (pid %d)\n", first.dataDir().filename().c_str(), leader);

  ASSERT_EQ(createFakeNode(viaSecond), "");
  ASSERT_EQ(createPod(viaSecond, "before"), "");
  ASSERT_TRUE(waitFor([&] { return nodeNameOf(viaSecond, "before") == kNode; }, std::chrono::seconds(60)))
      << "the leader did not bind pod before\n" << logs();
  EXPECT_EQ(second.log().find("leading: starting"), std::string::npos)
      << "the follower ran the control loops too:\n" << logs();

  WriteLoad load;
  load.start({&first, &second}, 3);
  ASSERT_TRUE(waitFor([&] { return load.acknowledged() >= 150; }, std::chrono::seconds(120)))
      << "the write load did not get going: " << load.acknowledged() << " acknowledged\n" << logs();

  first.kill9();
  auto killedAt = Clock::now();
  std::size_t ackedAtKill = load.acknowledged();
  ASSERT_EQ(createPod(viaSecond, "after"), "");

  // The survivor takes the Lease (by design within ttl + 2 × retry ≈ 9 s; the issue asks
  // for 15 s) and then binds the pod created after the kill.
  ASSERT_TRUE(waitFor([&] { return leaderPid(viaSecond) == second.pid(); }, std::chrono::seconds(60)))
      << "the survivor never took the Lease: " << viaSecond.get(kLeasePath).body << "\n" << logs();
  double tookLease = secondsSince(killedAt);
  ASSERT_TRUE(waitFor([&] { return nodeNameOf(viaSecond, "after") == kNode; }, std::chrono::seconds(60)))
      << "the survivor did not bind pod after\n" << logs();
  double scheduled = secondsSince(killedAt);
  std::printf("kill -9 of the leader -> survivor holds the Lease after %.1f s, binds a new pod after %.1f s\n",
              tookLease, scheduled);
  EXPECT_LE(tookLease, 15.0) << "takeover slower than the 15 s the issue asks for\n" << logs();

  // Keep writing to the survivor a little longer, then check every acknowledged name.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  load.stop();
  auto lost = load.lostWrites(viaSecond);
  for (std::size_t i = 0; i < lost.size() && i < 20; ++i) ADD_FAILURE() << lost[i];
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged writes lost of " << load.acknowledged();
  std::printf("%zu writes acknowledged (%zu before the kill), %zu refused or unanswered, %zu lost\n",
              load.acknowledged(), ackedAtKill, load.refused(), lost.size());

  // The killed server comes back on its data dir as a follower.
  ASSERT_EQ(first.start(), "");
  ApiClient viaFirst(first.dataDir(), first.url());
  EXPECT_EQ(leaderPid(viaFirst), second.pid());

  // Freeze the leader until its Lease expires: the other takes over and binds; when
  // the frozen one runs again it must find itself no longer leading and stop its loops
  // while its API keeps answering.
  ASSERT_EQ(::kill(second.pid(), SIGSTOP), 0);
  ASSERT_TRUE(waitFor([&] { return leaderPid(viaFirst) == first.pid(); }, std::chrono::seconds(60)))
      << "the restarted server never took the Lease from the frozen one\n" << logs();
  ASSERT_EQ(createPod(viaFirst, "while-frozen"), "");
  EXPECT_TRUE(waitFor([&] { return nodeNameOf(viaFirst, "while-frozen") == kNode; }, std::chrono::seconds(60)))
      << "the new leader did not bind pod while-frozen\n" << logs();
  ASSERT_EQ(::kill(second.pid(), SIGCONT), 0);
  EXPECT_TRUE(waitFor([&] { return second.log().find("lost leadership: stopping") != std::string::npos; },
                      std::chrono::seconds(30)))
      << "the old leader did not stop its loops after losing the Lease\n" << logs();
  ApiClient fresh(second.dataDir(), second.url());
  ferry::e2e::HttpReply ready;
  EXPECT_TRUE(waitFor([&] { return (ready = fresh.get("/readyz")).status == 200; }, std::chrono::seconds(30)))
      << "the old leader's API does not answer: " << ready.status << " " << ready.error << "\n" << logs();
  EXPECT_EQ(leaderPid(fresh), first.pid());

  if (HasFailure()) std::fprintf(stderr, "%s\n", logs().c_str());
  a.reset();
  b.reset();
  fs::remove_all(dir);
}
