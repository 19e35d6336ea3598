// The backend-selection logic of connect4/connect6 (lb4_select and lb6_select in
// bpf/service_lb.bpf.c), run on demand through BPF_PROG_TEST_RUN of the
// lb4_select_test and lb6_select_test programs: no sockets, no cgroups, maps
// filled by hand through the shared layouts.
#include "lb_maps.h"
#include "service_lb.skel.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <map>
#include <string>

namespace {

uint32_t ip(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;
}

class BpfSelectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
    skel_ = service_lb__open_and_load();
    ASSERT_NE(skel_, nullptr) << "load service_lb: " << strerror(errno);
  }
  void TearDown() override {
    if (skel_) service_lb__destroy(skel_);
  }

  // Service 10.96.0.10:80/TCP, id 7, with the given backends in slots 1..n.
  void addService(const std::vector<const char*>& backends, uint16_t flags = 0, uint32_t timeout = 0) {
    for (size_t i = 0; i < backends.size(); ++i) {
      uint32_t id = static_cast<uint32_t>(100 + i);
      lb4_backend b{};
      b.address = ip(backends[i]);
      b.port = htons(8080);
      b.protocol = IPPROTO_TCP;
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_backends), &id, &b, BPF_ANY), 0);
      lb4_key k = key(static_cast<uint16_t>(i + 1));
      lb4_service slot{};
      slot.backend_id = id;
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_services), &k, &slot, BPF_ANY), 0);
    }
    lb4_key k = key(0);
    lb4_service svc{};
    svc.count = static_cast<uint32_t>(backends.size());
    svc.service_id = 7;
    svc.flags = flags;
    svc.affinity_timeout_sec = timeout;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb4_services), &k, &svc, BPF_ANY), 0);
  }
  static lb4_key key(uint16_t slot) {
    lb4_key k{};
    k.address = ip("10.96.0.10");
    k.port = htons(80);
    k.protocol = IPPROTO_TCP;
    k.backend_slot = slot;
    return k;
  }
  lb4_select_args select(const char* address, int port, uint64_t client = 1) {
    lb4_select_args args{};
    args.address = ip(address);
    args.port = htons(static_cast<uint16_t>(port));
    args.protocol = IPPROTO_TCP;
    args.client_cookie = client;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
    int rc = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.lb4_select_test), &opts);
    EXPECT_EQ(rc, 0) << strerror(errno);
    return args;  // the kernel copies the context back into ctx_in
  }
  static std::string text(const lb4_select_args& a) {
    char buf[INET_ADDRSTRLEN];
    in_addr addr{a.backend_address};
    inet_ntop(AF_INET, &addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a.backend_port));
  }

  service_lb* skel_ = nullptr;
};

TEST_F(BpfSelectTest, RoundRobinIsExact) {
  addService({"10.244.0.11", "10.244.0.12", "10.244.0.13"});
  std::map<std::string, int> seen;
  for (int i = 0; i < 300; ++i) {
    auto r = select("10.96.0.10", 80, static_cast<uint64_t>(i));
    ASSERT_EQ(r.result, 0);
    seen[text(r)]++;
  }
  EXPECT_EQ(seen, (std::map<std::string, int>{{"10.244.0.11:8080", 100}, {"10.244.0.12:8080", 100}, {"10.244.0.13:8080", 100}}));
}

TEST_F(BpfSelectTest, NotAServicePassesAndEmptyServiceRefuses) {
  EXPECT_EQ(select("10.96.0.99", 80).result, -ENOENT);
  addService({});
  EXPECT_EQ(select("10.96.0.10", 80).result, -ECONNREFUSED);
  EXPECT_EQ(select("10.96.0.10", 81).result, -ENOENT) << "another port is another frontend";
}

TEST_F(BpfSelectTest, ClientIPAffinityPinsPerClient) {
  addService({"10.244.0.11", "10.244.0.12", "10.244.0.13"}, LB_SERVICE_CLIENT_IP_AFFINITY, 60);
  std::string first = text(select("10.96.0.10", 80, 42));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(text(select("10.96.0.10", 80, 42)), first);
  EXPECT_NE(text(select("10.96.0.10", 80, 43)), first) << "another client takes the next backend";
}

TEST_F(BpfSelectTest, MissingTailSlotFallsBackToSlotOne) {
  addService({"10.244.0.11", "10.244.0.12"});
  // A shrink in flight: the count still says 2 but slot 2 is gone.
  lb4_key k = key(2);
  ASSERT_EQ(bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb4_services), &k), 0);
  for (int i = 0; i < 4; ++i) {
    auto r = select("10.96.0.10", 80);
    ASSERT_EQ(r.result, 0);
    EXPECT_EQ(text(r), "10.244.0.11:8080");
  }
}

// IPv6: Service [fd00:96::10]:80/TCP, id 9, in the lb6 maps.
class Bpf6SelectTest : public BpfSelectTest {
 protected:
  static lb6_key key6(const char* address, uint16_t slot) {
    lb6_key k{};
    inet_pton(AF_INET6, address, k.address);
    k.port = htons(80);
    k.protocol = IPPROTO_TCP;
    k.backend_slot = slot;
    return k;
  }
  void addService6(const std::vector<const char*>& backends, uint16_t flags = 0, uint32_t timeout = 0) {
    for (size_t i = 0; i < backends.size(); ++i) {
      uint32_t id = static_cast<uint32_t>(200 + i);
      lb6_backend b{};
      ASSERT_EQ(inet_pton(AF_INET6, backends[i], b.address), 1) << backends[i];
      b.port = htons(8080);
      b.protocol = IPPROTO_TCP;
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_backends), &id, &b, BPF_ANY), 0);
      lb6_key k = key6("fd00:96::10", static_cast<uint16_t>(i + 1));
      lb4_service slot{};
      slot.backend_id = id;
      ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_services), &k, &slot, BPF_ANY), 0);
    }
    lb6_key k = key6("fd00:96::10", 0);
    lb4_service svc{};
    svc.count = static_cast<uint32_t>(backends.size());
    svc.service_id = 9;
    svc.flags = flags;
    svc.affinity_timeout_sec = timeout;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.lb6_services), &k, &svc, BPF_ANY), 0);
  }
  lb6_select_args select6(const char* address, int port, uint64_t client = 1) {
    lb6_select_args args{};
    inet_pton(AF_INET6, address, args.address);
    args.port = htons(static_cast<uint16_t>(port));
    args.protocol = IPPROTO_TCP;
    args.client_cookie = client;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof args);
    int rc = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.lb6_select_test), &opts);
    EXPECT_EQ(rc, 0) << strerror(errno);
    return args;
  }
  static std::string text6(const lb6_select_args& a) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a.backend_address, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a.backend_port));
  }
};

TEST_F(Bpf6SelectTest, RoundRobinIsExact) {
  addService6({"fd00:244::11", "fd00:244::12", "fd00:244::13"});
  std::map<std::string, int> seen;
  for (int i = 0; i < 300; ++i) {
    auto r = select6("fd00:96::10", 80, static_cast<uint64_t>(i));
    ASSERT_EQ(r.result, 0);
    seen[text6(r)]++;
  }
  EXPECT_EQ(seen, (std::map<std::string, int>{
                      {"[fd00:244::11]:8080", 100}, {"[fd00:244::12]:8080", 100}, {"[fd00:244::13]:8080", 100}}));
}

TEST_F(Bpf6SelectTest, NotAServicePassesAndEmptyServiceRefuses) {
  EXPECT_EQ(select6("fd00:96::99", 80).result, -ENOENT);
  addService6({});
  EXPECT_EQ(select6("fd00:96::10", 80).result, -ECONNREFUSED);
  EXPECT_EQ(select6("fd00:96::10", 81).result, -ENOENT) << "another port is another frontend";
  // Only the last word differs from the Service: all 16 bytes are the key.
  EXPECT_EQ(select6("fd00:97::10", 80).result, -ENOENT);
}

TEST_F(Bpf6SelectTest, FamiliesDoNotMix) {
  addService({"10.244.0.11"});
  addService6({"fd00:244::11"});
  // The IPv4 Service is not found through the IPv6 program, nor the reverse,
  // though their address words could be confused.
  EXPECT_EQ(select6("::a60:a", 80).result, -ENOENT) << "::10.96.0.10 is not 10.96.0.10";
  EXPECT_EQ(select("10.96.0.10", 80).result, 0);
  auto r = select6("fd00:96::10", 80);
  ASSERT_EQ(r.result, 0);
  EXPECT_EQ(text6(r), "[fd00:244::11]:8080");
}

TEST_F(Bpf6SelectTest, ClientIPAffinityPinsPerClient) {
  addService6({"fd00:244::11", "fd00:244::12", "fd00:244::13"}, LB_SERVICE_CLIENT_IP_AFFINITY, 60);
  std::string first = text6(select6("fd00:96::10", 80, 42));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(text6(select6("fd00:96::10", 80, 42)), first);
  EXPECT_NE(text6(select6("fd00:96::10", 80, 43)), first) << "another client takes the next backend";
}

TEST_F(Bpf6SelectTest, MissingTailSlotFallsBackToSlotOne) {
  addService6({"fd00:244::11", "fd00:244::12"});
  lb6_key k = key6("fd00:96::10", 2);
  ASSERT_EQ(bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb6_services), &k), 0);
  for (int i = 0; i < 4; ++i) {
    auto r = select6("fd00:96::10", 80);
    ASSERT_EQ(r.result, 0);
    EXPECT_EQ(text6(r), "[fd00:244::11]:8080");
  }
}

}  // namespace
