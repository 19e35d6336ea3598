#include "proxy/nft_ruleset.h"
#include "proxy/service_table.h"

#include <gtest/gtest.h>

namespace ferry::proxy {
namespace {

api::Service service(const std::string& name, const std::string& ip) {
  api::Service s;
  s.ns = "default";
  s.name = name;
  s.clusterIP = ip;
  s.ports.push_back({"http", "TCP", 80, {true, 0, "web"}, 0});
  s.ports.push_back({"metrics", "TCP", 9090, {false, 9090, ""}, 0});
  return s;
}

api::Endpoint endpoint(const std::string& address, bool ready, bool serving, bool terminating, const std::string& node) {
  return api::Endpoint{{address}, ready, serving, terminating, node, "", ""};
}

api::EndpointSlice slice(const std::string& name, const std::string& service, std::vector<api::Endpoint> endpoints,
                         int httpPort = 8080) {
  api::EndpointSlice e;
  e.ns = "default";
  e.name = name;
  e.serviceName = service;
  e.ports = {{"http", "TCP", httpPort}, {"metrics", "TCP", 9090}};
  e.endpoints = std::move(endpoints);
  return e;
}

std::vector<std::string> texts(const std::vector<Backend>& v) {
  std::vector<std::string> out;
  for (const auto& b : v) out.push_back(b.text());
  return out;
}

TEST(ServiceTable, NamedTargetPortsResolvePerSlicePortName) {
  ServiceTable t("node-a");
  t.upsertService(service("web", "10.96.0.10"));
  // Two slices whose pods expose the named port on different numbers.
  t.upsertEndpointSlice(slice("web-1", "web", {endpoint("10.244.0.11", true, true, false, "node-a")}, 8080));
  t.upsertEndpointSlice(slice("web-2", "web", {endpoint("10.244.1.12", true, true, false, "node-b")}, 8081));
  auto plans = t.plan("default/web");
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_EQ(texts(plans[0].allBackends), (std::vector<std::string>{"10.244.0.11:8080", "10.244.1.12:8081"}));
  EXPECT_EQ(plans[1].port, 9090);
  EXPECT_EQ(texts(plans[1].allBackends), (std::vector<std::string>{"10.244.0.11:9090", "10.244.1.12:9090"}));
}

TEST(ServiceTable, TerminatingServingEndpointsOnlyWhenNoReadyOne) {
  ServiceTable t("node-a");
  t.upsertService(service("web", "10.96.0.10"));
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.11", true, true, false, "node-a"),
                               endpoint("10.244.0.12", false, true, true, "node-a"),
                               endpoint("10.244.0.13", false, false, true, "node-a")}));
  EXPECT_EQ(texts(t.plan("default/web")[0].allBackends), std::vector<std::string>{"10.244.0.11:8080"});
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.12", false, true, true, "node-a"),
                               endpoint("10.244.0.13", false, false, true, "node-a")}));
  EXPECT_EQ(texts(t.plan("default/web")[0].allBackends), std::vector<std::string>{"10.244.0.12:8080"});
}

TEST(ServiceTable, TrafficPoliciesFilterByNode) {
  ServiceTable t("node-a");
  api::Service s = service("web", "10.96.0.10");
  s.type = "NodePort";
  s.ports[0].nodePort = 30080;
  s.internalTrafficPolicy = "Local";
  s.externalTrafficPolicy = "Local";
  t.upsertService(s);
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.11", true, true, false, "node-a"),
                               endpoint("10.244.1.12", true, true, false, "node-b")}));
  auto p = t.plan("default/web")[0];
  EXPECT_EQ(texts(p.internalBackends), std::vector<std::string>{"10.244.0.11:8080"});
  EXPECT_EQ(texts(p.externalBackends), std::vector<std::string>{"10.244.0.11:8080"});
  EXPECT_EQ(p.allBackends.size(), 2u);
  EXPECT_TRUE(p.externalPolicyLocal);
  EXPECT_EQ(p.nodePort, 30080);
}

TEST(ServiceTable, HeadlessAndExternalNameProgramNothing) {
  ServiceTable t("node-a");
  t.upsertService(service("headless", "None"));
  api::Service ext = service("ext", "");
  ext.type = "ExternalName";
  t.upsertService(ext);
  t.upsertEndpointSlice(slice("h-1", "headless", {endpoint("10.244.0.11", true, true, false, "node-a")}));
  EXPECT_TRUE(t.planAll().empty());
}

TEST(ServiceTable, LocalOverrideReplacesEndpointsByPortNameOrNumber) {
  ServiceTable t("node-a");
  t.upsertService(service("kube-dns", "10.96.0.10"));
  t.upsertEndpointSlice(slice("dns-1", "kube-dns", {endpoint("10.244.0.11", true, true, false, "node-a")}));
  t.setOverride("default/kube-dns", {{"http", "127.0.0.53", 53}, {"9090", "127.0.0.53", 9153}});
  auto plans = t.plan("default/kube-dns");
  EXPECT_EQ(texts(plans[0].internalBackends), std::vector<std::string>{"127.0.0.53:53"});
  EXPECT_EQ(texts(plans[1].internalBackends), std::vector<std::string>{"127.0.0.53:9153"});
  t.clearOverride("default/kube-dns");
  EXPECT_EQ(texts(t.plan("default/kube-dns")[0].internalBackends), std::vector<std::string>{"10.244.0.11:8080"});
}

TEST(ServiceTable, FrontendsIncludeNodePortOnTheNodeAddress) {
  ServicePortPlan p;
  p.clusterIP = "10.96.0.10";
  p.port = 80;
  p.protocol = "TCP";
  p.nodePort = 30080;
  p.internalBackends = {{"10.244.0.12", 8080}};
  p.allBackends = {{"10.244.0.12", 8080}, {"10.244.0.11", 8080}};
  auto f = frontendsOf(p, "192.168.1.5");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[(FrontendKey{"10.96.0.10", 80, "TCP"})].backends, std::vector<std::string>{"10.244.0.12:8080"});
  EXPECT_EQ(f[(FrontendKey{"192.168.1.5", 30080, "TCP"})].backends,
            (std::vector<std::string>{"10.244.0.11:8080", "10.244.0.12:8080"}));
}

TEST(ServiceTable, DualStackServiceHasAPlanPerFamilyFromSlicesOfItsAddressType) {
  ServiceTable t("node-a");
  api::Service s = service("web", "10.96.0.10");
  s.type = "NodePort";
  s.ports[0].nodePort = 30080;
  s.clusterIPs = {"10.96.0.10", "FD00:96:0::10"};  // not canonical: read back as inet_ntop writes it
  t.upsertService(s);
  t.upsertEndpointSlice(slice("web-v4", "web", {endpoint("10.244.0.11", true, true, false, "node-a")}));
  api::EndpointSlice v6 = slice("web-v6", "web", {endpoint("fd00:244:0::11", true, true, false, "node-a")});
  v6.addressType = "IPv6";
  t.upsertEndpointSlice(v6);
  api::EndpointSlice fqdn = slice("web-fqdn", "web", {endpoint("web.example", true, true, false, "node-a")});
  fqdn.addressType = "FQDN";
  t.upsertEndpointSlice(fqdn);
  auto plans = t.plan("default/web");
  ASSERT_EQ(plans.size(), 4u) << "2 ports x 2 families";
  EXPECT_FALSE(plans[0].ipv6);
  EXPECT_EQ(plans[0].clusterIP, "10.96.0.10");
  EXPECT_EQ(texts(plans[0].allBackends), std::vector<std::string>{"10.244.0.11:8080"});
  EXPECT_TRUE(plans[1].ipv6);
  EXPECT_EQ(plans[1].clusterIP, "fd00:96::10");
  EXPECT_EQ(texts(plans[1].allBackends), std::vector<std::string>{"[fd00:244::11]:8080"});
  // The NodePort frontend only in the node address's family.
  EXPECT_EQ(frontendsOf(plans[0], "192.168.1.5").size(), 2u);
  auto f6 = frontendsOf(plans[1], "192.168.1.5");
  ASSERT_EQ(f6.size(), 1u);
  EXPECT_EQ(f6.begin()->first, (FrontendKey{"fd00:96::10", 80, "TCP"}));
  // nftables: the ip table takes the IPv4 plans, the ip6 table the IPv6 ones.
  NftFragment f = renderServiceFragment(plans, NftServiceOptions{"ferry", "192.168.1.5", "10.244.0.0/16", true});
  for (const auto& [key, _] : f.serviceElements) EXPECT_EQ(key.find(':'), std::string::npos) << key;
  NftServiceOptions o6{"ferry", "192.168.1.5", "10.244.0.0/16", true, true};
  NftFragment frag6 = renderServiceFragment(plans, o6);
  EXPECT_EQ(frag6.serviceElements.count("fd00:96::10 . tcp . 80"), 1u);
  EXPECT_EQ(frag6.serviceElements.size(), 2u) << "both ports, no NodePort (the node address is IPv4)";
  std::string all;
  for (const auto& [name, rules] : frag6.chains) {
    EXPECT_EQ(name.find(':'), std::string::npos) << "nft names take no ':': " << name;
    for (const auto& r : rules) all += r + "\n";
  }
  EXPECT_NE(all.find("dnat to [fd00:244::11]:8080"), std::string::npos) << all;
  EXPECT_EQ(all.find("ip saddr"), std::string::npos) << all;
  std::string table = renderServiceRuleset({{"default/web", frag6}}, o6);
  EXPECT_NE(table.find("table ip6 ferry {"), std::string::npos);
  EXPECT_NE(table.find("type ipv6_addr . inet_proto . inet_service : verdict"), std::string::npos);
  EXPECT_NE(table.find("ip6 daddr . meta l4proto . th dport vmap @services"), std::string::npos);
  EXPECT_EQ(renderFragmentUpdate("ferry", {}, frag6, "ip6").find("add chain ip6 ferry "), 0u);
}

TEST(ServiceTable, SingleStackIPv6ServiceAndOverride) {
  ServiceTable t("node-a");
  api::Service s = service("dns", "fd00:96::a");
  s.clusterIPs = {"fd00:96::a"};
  t.upsertService(s);
  t.setOverride("default/dns", {{"http", "fd00:244::53", 5353}, {"http", "10.244.0.53", 5353}});
  auto plans = t.plan("default/dns");
  ASSERT_EQ(plans.size(), 2u);
  EXPECT_TRUE(plans[0].ipv6);
  EXPECT_EQ(texts(plans[0].allBackends), std::vector<std::string>{"[fd00:244::53]:5353"}) << "the family's override only";
}

TEST(NftRuleset, NftablesModeBalancesWithNumgenAndRefusesEmptyServices) {
  ServiceTable t("node-a");
  api::Service web = service("web", "10.96.0.10");
  web.type = "NodePort";
  web.ports[0].nodePort = 30080;
  t.upsertService(web);
  t.upsertService(service("empty", "10.96.0.20"));
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.11", true, true, false, "node-a"),
                               endpoint("10.244.0.12", true, true, false, "node-a")}));
  auto fragments = [&](bool clusterIPs) {
    std::map<std::string, NftFragment> out;
    for (const auto& key : t.serviceKeys())
      out[key] = renderServiceFragment(t.plan(key), {"ferry", "192.168.1.5", "10.244.0.0/16", clusterIPs});
    return out;
  };
  std::string text = renderServiceRuleset(fragments(true), {"ferry", "192.168.1.5", "10.244.0.0/16", true});
  EXPECT_NE(text.find("numgen inc mod 2 vmap"), std::string::npos);
  EXPECT_NE(text.find("10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/80"), std::string::npos);
  EXPECT_NE(text.find("192.168.1.5 . tcp . 30080 : goto ext-default/web/tcp/80"), std::string::npos);
  EXPECT_NE(text.find("10.96.0.20 . tcp . 80 : goto reject-chain"), std::string::npos);
  EXPECT_NE(text.find("dnat to 10.244.0.12:8080"), std::string::npos);
  EXPECT_NE(text.find("hook output priority -100"), std::string::npos);

  // ebpf mode: only what arrives from other hosts on a NodePort.
  std::string ebpf = renderServiceRuleset(fragments(false), {"ferry", "192.168.1.5", "10.244.0.0/16", false});
  EXPECT_EQ(ebpf.find("10.96.0.10 . tcp"), std::string::npos);
  EXPECT_EQ(ebpf.find("hook output"), std::string::npos);
  EXPECT_NE(ebpf.find("192.168.1.5 . tcp . 30080"), std::string::npos);
}

TEST(NftRuleset, OneEndpointChangeTouchesOnlyThatServiceInOrder) {
  ServiceTable t("node-a");
  t.upsertService(service("web", "10.96.0.10"));
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.11", true, true, false, "node-a"),
                               endpoint("10.244.0.12", true, true, false, "node-a")}));
  NftServiceOptions o{"ferry", "", "", true};
  NftFragment before = renderServiceFragment(t.plan("default/web"), o);
  EXPECT_EQ(renderFragmentUpdate("ferry", before, before), "");
  t.upsertEndpointSlice(slice("web-1", "web",
                              {endpoint("10.244.0.11", true, true, false, "node-a"),
                               endpoint("10.244.0.13", true, true, false, "node-a")}));
  std::string update = renderFragmentUpdate("ferry", before, renderServiceFragment(t.plan("default/web"), o));
  size_t addChain = update.find("add chain ip ferry ep-default/web/tcp/80/10.244.0.13/8080");
  size_t flush = update.find("flush chain ip ferry svc-default/web/tcp/80");
  size_t del = update.find("delete chain ip ferry ep-default/web/tcp/80/10.244.0.12/8080");
  size_t rule = update.find("add rule ip ferry svc-default/web/tcp/80 numgen inc mod 2");
  ASSERT_NE(addChain, std::string::npos) << update;
  ASSERT_NE(flush, std::string::npos) << update;
  ASSERT_NE(del, std::string::npos) << update;
  ASSERT_NE(rule, std::string::npos) << update;
  EXPECT_LT(flush, del) << "references go before what they name";
  EXPECT_LT(addChain, rule) << "a chain exists before a rule jumps to it";
  EXPECT_EQ(update.find("10.244.0.11/8080 {"), std::string::npos) << "unchanged endpoint chains are left alone";
  EXPECT_EQ(update.find("element"), std::string::npos) << "the map entry still names the same chain";
}

TEST(NftRuleset, MasqueradeLeavesPodToPodTrafficAlone) {
  std::string text = renderMasqueradeTable("ferry-nat", "10.42.0.0/16");
  EXPECT_NE(text.find("ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16"), std::string::npos);
  EXPECT_EQ(text.rfind("add table ip ferry-nat\ndelete table ip ferry-nat\n", 0), 0u) << "atomic replace";
}

}  // namespace
}  // namespace ferry::proxy
