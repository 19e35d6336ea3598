#include "agent/sandbox/ipam.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

namespace ferry::agent {
namespace {

Ipv4Cidr cidr(const std::string& text) {
  auto parsed = Ipv4Cidr::parse(text);
  EXPECT_TRUE(parsed) << text;
  return *parsed;
}

TEST(Ipv4CidrTest, ParsesAndRejects) {
  EXPECT_EQ(cidr("10.42.1.0/24").toString(), "10.42.1.0/24");
  EXPECT_EQ(cidr("10.42.1.0/24").size(), 256u);
  EXPECT_FALSE(Ipv4Cidr::parse("10.42.1.1/24")) << "host bits set";
  EXPECT_FALSE(Ipv4Cidr::parse("10.42.1.0"));
  EXPECT_FALSE(Ipv4Cidr::parse("10.42.1.0/33"));
  EXPECT_FALSE(Ipv4Cidr::parse("10.42.1.0/2x"));
  EXPECT_FALSE(Ipv4Cidr::parse("10.42.300.0/24"));
  EXPECT_TRUE(cidr("10.42.1.0/24").contains(*parseIpv4("10.42.1.255")));
  EXPECT_FALSE(cidr("10.42.1.0/24").contains(*parseIpv4("10.42.2.0")));
}

TEST(IpamTest, NeverHandsOutAnAddressTwiceAndSkipsReservedOnes) {
  Ipam ipam(cidr("10.42.1.0/24"));
  EXPECT_EQ(ipv4ToString(ipam.gateway()), "10.42.1.1");
  EXPECT_EQ(ipam.capacity(), 253u);
  std::set<uint32_t> seen;
  for (uint32_t i = 0; i < ipam.capacity(); ++i) {
    auto address = ipam.allocate("pod-" + std::to_string(i));
    ASSERT_TRUE(address) << i;
    EXPECT_TRUE(seen.insert(*address).second) << ipv4ToString(*address);
    std::string text = ipv4ToString(*address);
    EXPECT_NE(text, "10.42.1.0");
    EXPECT_NE(text, "10.42.1.1");
    EXPECT_NE(text, "10.42.1.255");
  }
  auto full = ipam.allocate("one-too-many");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ENOSPC);
  // Same owner gets the same address back.
  EXPECT_EQ(*ipam.allocate("pod-7"), *ipam.addressOf("pod-7"));
  EXPECT_TRUE(ipam.release("pod-7"));
  EXPECT_FALSE(ipam.release("pod-7"));
  EXPECT_TRUE(ipam.allocate("newcomer"));
}

TEST(IpamTest, ReleasedAddressIsNotReusedAtOnce) {
  Ipam ipam(cidr("10.42.1.0/24"));
  uint32_t first = *ipam.allocate("a");
  ipam.release("a");
  EXPECT_NE(*ipam.allocate("b"), first);
}

TEST(IpamTest, StateRoundTripsAndRestoredAllocationsAreNotReused) {
  Ipam ipam(cidr("10.42.3.0/28"));
  for (const char* owner : {"a", "b", "c"}) ASSERT_TRUE(ipam.allocate(owner));
  ipam.release("b");
  auto restored = Ipam::deserialize(ipam.serialize());
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(restored->allocations(), ipam.allocations());
  std::set<uint32_t> used{*restored->addressOf("a"), *restored->addressOf("c")};
  while (true) {
    auto address = restored->allocate("x" + std::to_string(used.size()));
    if (!address) break;
    EXPECT_TRUE(used.insert(*address).second);
  }
  EXPECT_EQ(used.size(), restored->capacity());
}

TEST(IpamTest, BadStateIsRejectedNamingTheField) {
  auto bad = Ipam::deserialize(R"({"cidr":"10.42.1.0/24","allocations":{"p":"10.42.2.5"}})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("allocations.p"), std::string::npos) << bad.error().message;
  bad = Ipam::deserialize(R"({"cidr":"10.42.1.0/24","allocations":{"p":"10.42.1.5","q":"10.42.1.5"}})");
  ASSERT_FALSE(bad);
  bad = Ipam::deserialize(R"({"cidr":"10.42.1.0/24","allocations":{"p":"10.42.1.1"}})");
  ASSERT_FALSE(bad) << "the gateway is never a pod address";
  EXPECT_FALSE(Ipam::deserialize("not json"));
  EXPECT_FALSE(Ipam::deserialize(R"({"allocations":{}})"));
}

TEST(IpamTest, FilePersistenceIsAtomicAndChecksTheCidr) {
  std::string dir = "/tmp/ferry-ipam-test-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::string path = dir + "/ipam.json";
  auto fresh = Ipam::loadOrCreate(path, cidr("10.42.1.0/24"));
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(fresh->allocations().empty());
  ASSERT_TRUE(fresh->allocate("pod"));
  ASSERT_TRUE(fresh->saveTo(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto loaded = Ipam::loadOrCreate(path, cidr("10.42.1.0/24"));
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->addressOf("pod"), fresh->addressOf("pod"));
  auto other = Ipam::loadOrCreate(path, cidr("10.42.2.0/24"));
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, EINVAL);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::agent
