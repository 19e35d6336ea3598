#include "netns/node_network.h"

#include "netns/namespace_pins.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>

#include <fstream>
#include <mutex>
#include <memory>

namespace ferry::netns {
namespace {

// Routes Ferry adds carry this protocol number so they can be told from others
// (like `proto bird` for Calico); any value the kernel does not use itself works.
constexpr uint8_t kFerryRouteProtocol = 198;

int errnoFromNl(int nlError) {
  switch (-std::abs(nlError)) {
    case -NLE_EXIST: return EEXIST;
    case -NLE_OBJ_NOTFOUND: return ENOENT;
    case -NLE_NODEV: return ENODEV;
    case -NLE_PERM:
    case -NLE_NOACCESS: return EPERM;
    case -NLE_INVAL: return EINVAL;
    case -NLE_BUSY: return EBUSY;
    case -NLE_NOMEM: return ENOMEM;
    case -NLE_NOADDR: return EADDRNOTAVAIL;
    case -NLE_RANGE: return ERANGE;
    default: return EIO;
  }
}

std::unexpected<Error> failNl(const std::string& context, int nlError) {
  return fail(errnoFromNl(nlError), context + ": " + nl_geterror(nlError));
}

bool isNotFound(int nlError) {
  int e = -std::abs(nlError);
  return e == -NLE_OBJ_NOTFOUND || e == -NLE_NODEV;
}

// Small owners for libnl objects so every early return frees them.
template <class T, void (*Free)(T*)>
struct NlPtr {
  T* p = nullptr;
  NlPtr() = default;
  explicit NlPtr(T* ptr) : p(ptr) {}
  ~NlPtr() { if (p) Free(p); }
  NlPtr(const NlPtr&) = delete;
  NlPtr& operator=(const NlPtr&) = delete;
  T* get() const { return p; }
  T** out() { return &p; }
};
using LinkPtr = NlPtr<rtnl_link, rtnl_link_put>;
using AddrPtr = NlPtr<rtnl_addr, rtnl_addr_put>;
using RoutePtr = NlPtr<rtnl_route, rtnl_route_put>;
using NlAddrPtr = NlPtr<nl_addr, nl_addr_put>;
using CachePtr = NlPtr<nl_cache, nl_cache_free>;
struct SocketFree {
  void operator()(nl_sock* sock) const { nl_socket_free(sock); }
};
using Socket = std::unique_ptr<nl_sock, SocketFree>;

Result<Socket> connectRoute() {
  Socket sock(nl_socket_alloc());
  if (!sock) return fail(ENOMEM, "allocate netlink socket");
  int err = nl_connect(sock.get(), NETLINK_ROUTE);
  if (err < 0) return failNl("connect rtnetlink", err);
  return sock;
}

Result<nl_addr*> parseAddress(const std::string& text, const std::string& field) {
  nl_addr* addr = nullptr;
  int err = nl_addr_parse(text.c_str(), AF_INET, &addr);
  if (err < 0) return fail(EINVAL, field + ": not an IPv4 address: \"" + text + "\"");
  return addr;
}

std::string addressText(nl_addr* addr, bool withPrefix) {
  if (!addr) return {};
  char buf[64];
  if (nl_addr_get_prefixlen(addr) == 0 && nl_addr_iszero(addr)) return "default";
  std::string text = nl_addr2str(addr, buf, sizeof buf);
  if (!withPrefix) {
    auto slash = text.find('/');
    if (slash != std::string::npos) text.resize(slash);
  } else if (text.find('/') == std::string::npos) {
    text += "/" + std::to_string(nl_addr_get_prefixlen(addr));
  }
  return text;
}

Status setLinkUp(nl_sock* sock, const std::string& name) {
  LinkPtr link;
  int err = rtnl_link_get_kernel(sock, 0, name.c_str(), link.out());
  if (err < 0) return failNl("find link " + name, err);
  if (rtnl_link_get_flags(link.get()) & IFF_UP) return {};
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_flags(change.get(), IFF_UP);
  err = rtnl_link_change(sock, link.get(), change.get(), 0);
  if (err < 0) return failNl("set link " + name + " up", err);
  return {};
}

// The host end of a pod's veth is a bridge port and needs no address of its own. Left
// alone, the kernel gives it an IPv6 link-local address when its carrier comes up, with
// duplicate address detection and MLD reports flooded over the bridge to every pod
// (perf put addrconf/MLD at ~4 % of a pod-start burst; a podstart A/B could not resolve
// the gain, bench/RESULTS.md session 12). Must precede the carrier.
// Best effort: a kernel without IPv6 refuses the attribute and has no addrconf anyway.
void disableIpv6Addrconf(nl_sock* sock, const std::string& name) {
  LinkPtr byName(rtnl_link_alloc());
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_name(change.get(), name.c_str());
  if (rtnl_link_inet6_set_addr_gen_mode(change.get(), IN6_ADDR_GEN_MODE_NONE) < 0) return;
  (void)rtnl_link_change(sock, byName.get(), change.get(), 0);
}

// A bridge whose address was never set takes the lowest address among its ports, so it
// changes whenever a pod's veth with a lower address joins or the owner of the lowest one
// leaves. Pods keep the gateway's old address in their neighbour table for up to a minute
// and their packets to it (cluster DNS, the node) are lost meanwhile. Setting the address,
// even to the one it has, marks it chosen by the user and the kernel keeps it.
Status pinLinkAddress(nl_sock* sock, const std::string& name) {
  LinkPtr link;
  int err = rtnl_link_get_kernel(sock, 0, name.c_str(), link.out());
  if (err < 0) return failNl("find link " + name, err);
  nl_addr* current = rtnl_link_get_addr(link.get());
  if (!current) return fail(EINVAL, "link " + name + " has no link-layer address");
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_addr(change.get(), current);
  err = rtnl_link_change(sock, link.get(), change.get(), 0);
  if (err < 0) return failNl("pin the address of " + name, err);
  return {};
}

// Hairpin on a bridge port: a frame may leave through the port it came in on. A pod that
// reaches itself through a Service whose DNAT happens in the bridge path (br_netfilter,
// nftables proxy mode) needs it, as with the kubelet's hairpin-veth mode.
Status setHairpin(nl_sock* sock, const std::string& portName) {
  LinkPtr port;
  int err = rtnl_link_get_kernel(sock, 0, portName.c_str(), port.out());
  if (err < 0) return failNl("find bridge port " + portName, err);
  LinkPtr orig(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), rtnl_link_get_ifindex(port.get()));
  rtnl_link_set_family(orig.get(), AF_BRIDGE);
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_family(change.get(), AF_BRIDGE);
  rtnl_link_bridge_set_flags(change.get(), RTNL_BRIDGE_HAIRPIN_MODE);
  err = rtnl_link_change(sock, orig.get(), change.get(), 0);
  if (err < 0) return failNl("hairpin on bridge port " + portName, err);
  return {};
}

Status addAddress(nl_sock* sock, int ifindex, const std::string& cidr, const std::string& field) {
  auto local = parseAddress(cidr, field);
  if (!local) return fail(local.error());
  NlAddrPtr localOwner(*local);
  AddrPtr addr(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(addr.get(), ifindex);
  rtnl_addr_set_family(addr.get(), AF_INET);
  int err = rtnl_addr_set_local(addr.get(), localOwner.get());
  if (err < 0) return failNl("address " + cidr, err);
  err = rtnl_addr_add(sock, addr.get(), 0);
  if (err < 0 && -std::abs(err) != -NLE_EXIST) return failNl("add address " + cidr, err);
  return {};
}

Status addRoute(nl_sock* sock, const std::string& destination, const std::string& via, int ifindex,
                int flags) {
  NlAddrPtr dst;
  if (destination == "default") {
    uint32_t zero = 0;
    dst.p = nl_addr_build(AF_INET, &zero, sizeof zero);
    nl_addr_set_prefixlen(dst.get(), 0);
  } else {
    auto parsed = parseAddress(destination, "destination");
    if (!parsed) return fail(parsed.error());
    dst.p = *parsed;
  }
  auto gateway = parseAddress(via, "via");
  if (!gateway) return fail(gateway.error());
  NlAddrPtr gatewayOwner(*gateway);

  RoutePtr route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  rtnl_route_set_protocol(route.get(), kFerryRouteProtocol);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  int err = rtnl_route_set_dst(route.get(), dst.get());
  if (err < 0) return failNl("route destination " + destination, err);
  rtnl_nexthop* nexthop = rtnl_route_nh_alloc();
  rtnl_route_nh_set_gateway(nexthop, gatewayOwner.get());
  if (ifindex > 0) rtnl_route_nh_set_ifindex(nexthop, ifindex);
  rtnl_route_add_nexthop(route.get(), nexthop);  // the route owns it now
  err = rtnl_route_add(sock, route.get(), flags);
  if (err < 0) return failNl("add route " + destination + " via " + via, err);
  return {};
}

Result<std::vector<std::string>> listLinksOn(nl_sock* sock) {
  CachePtr cache;
  int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, cache.out());
  if (err < 0) return failNl("list links", err);
  std::vector<std::string> names;
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(obj));
    if (name) names.emplace_back(name);
  }
  return names;
}

std::string linkName(nl_cache* links, int ifindex) {
  char buf[IFNAMSIZ + 1] = {};
  if (ifindex <= 0 || !rtnl_link_i2name(links, ifindex, buf, sizeof buf)) return {};
  return buf;
}

Result<std::vector<AddressEntry>> listAddressesOn(nl_sock* sock) {
  CachePtr links, addrs;
  int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, links.out());
  if (err < 0) return failNl("list links", err);
  err = rtnl_addr_alloc_cache(sock, addrs.out());
  if (err < 0) return failNl("list addresses", err);
  std::vector<AddressEntry> result;
  for (nl_object* obj = nl_cache_get_first(addrs.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    if (rtnl_addr_get_family(addr) != AF_INET) continue;
    result.push_back({linkName(links.get(), rtnl_addr_get_ifindex(addr)),
                      addressText(rtnl_addr_get_local(addr), true)});
  }
  return result;
}

Result<std::vector<RouteEntry>> listRoutesOn(nl_sock* sock) {
  CachePtr links, routes;
  int err = rtnl_link_alloc_cache(sock, AF_UNSPEC, links.out());
  if (err < 0) return failNl("list links", err);
  err = rtnl_route_alloc_cache(sock, AF_INET, 0, routes.out());
  if (err < 0) return failNl("list routes", err);
  std::vector<RouteEntry> result;
  for (nl_object* obj = nl_cache_get_first(routes.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* route = reinterpret_cast<rtnl_route*>(obj);
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN || rtnl_route_get_type(route) != RTN_UNICAST) continue;
    RouteEntry entry;
    entry.destination = addressText(rtnl_route_get_dst(route), true);
    if (rtnl_route_get_nnexthops(route) > 0) {
      rtnl_nexthop* nexthop = rtnl_route_nexthop_n(route, 0);
      entry.via = addressText(rtnl_route_nh_get_gateway(nexthop), false);
      entry.device = linkName(links.get(), rtnl_route_nh_get_ifindex(nexthop));
    }
    entry.ownedByFerry = rtnl_route_get_protocol(route) == kFerryRouteProtocol;
    result.push_back(std::move(entry));
  }
  return result;
}


// Pod side: lo and eth0 up, the pod address and the default route, in the current netns.
Status configurePodSide(nl_sock* sock, const PodLinkSpec& spec) {
  if (Status s = setLinkUp(sock, "lo"); !s) return s;
  if (Status s = setLinkUp(sock, "eth0"); !s) return s;
  LinkPtr eth0;
  int e = rtnl_link_get_kernel(sock, 0, "eth0", eth0.out());
  if (e < 0) return failNl("find eth0", e);
  int ifindex = rtnl_link_get_ifindex(eth0.get());
  if (Status s = addAddress(sock, ifindex, spec.podAddress, "podAddress"); !s) return s;
  return addRoute(sock, "default", spec.gateway, ifindex, NLM_F_EXCL);
}

}  // namespace

struct NodeNetwork::Impl {
  std::string netnsPath;
  // A libnl socket serves one request at a time (its sequence numbers and receive
  // buffer are per socket), and sandboxes of different pods are made in parallel.
  std::mutex socketMutex;
  Socket socket;
  int netnsFd = -1;  // the node's network namespace, where pod veths send their host end
  ~Impl() {
    if (netnsFd >= 0) ::close(netnsFd);
  }
  nl_sock* sock() const { return socket.get(); }
  std::unique_lock<std::mutex> lockSocket() { return std::unique_lock(socketMutex); }
};

namespace {
Result<int> linkIndexOn(nl_sock* sock, const std::string& name) {
  LinkPtr link;
  int err = rtnl_link_get_kernel(sock, 0, name.c_str(), link.out());
  if (err < 0) {
    if (isNotFound(err)) return fail(ENODEV, "link " + name + ": no such device");
    return failNl("find link " + name, err);
  }
  return rtnl_link_get_ifindex(link.get());
}
}  // namespace


NodeNetwork::NodeNetwork(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NodeNetwork::~NodeNetwork() = default;

Result<std::unique_ptr<NodeNetwork>> NodeNetwork::open(const std::string& nodeNetnsPath) {
  auto impl = std::make_unique<Impl>();
  impl->netnsPath = nodeNetnsPath;
  std::string nsFile = nodeNetnsPath.empty() ? "/proc/thread-self/ns/net" : nodeNetnsPath;
  impl->netnsFd = ::open(nsFile.c_str(), O_RDONLY | O_CLOEXEC);
  if (impl->netnsFd < 0) return failErrno("open node network namespace " + nsFile);
  if (nodeNetnsPath.empty()) {
    auto socket = connectRoute();
    if (!socket) return fail(socket.error());
    impl->socket = std::move(*socket);
  } else {
    // A netlink socket stays bound to the namespace it was opened in, so it is opened
    // on a thread inside the node namespace and then used from any thread.
    Status status = runInNetworkNamespace(nodeNetnsPath, [&]() -> Status {
      auto socket = connectRoute();
      if (!socket) return fail(socket.error());
      impl->socket = std::move(*socket);
      return {};
    });
    if (!status) return fail(status.error().wrap("open node network " + nodeNetnsPath));
  }
  return std::unique_ptr<NodeNetwork>(new NodeNetwork(std::move(impl)));
}

Result<int> NodeNetwork::linkIndex(const std::string& name) {
  auto lock = impl_->lockSocket();
  return linkIndexOn(impl_->sock(), name);
}

Status NodeNetwork::ensureBridge(const std::string& name, const std::string& gatewayCidr) {
  auto lock = impl_->lockSocket();
  auto index = linkIndexOn(impl_->sock(), name);
  if (!index && index.error().code == ENODEV) {
    LinkPtr bridge(rtnl_link_bridge_alloc());
    rtnl_link_set_name(bridge.get(), name.c_str());
    int err = rtnl_link_add(impl_->sock(), bridge.get(), NLM_F_CREATE);
    if (err < 0 && -std::abs(err) != -NLE_EXIST) return failNl("create bridge " + name, err);
    index = linkIndexOn(impl_->sock(), name);
  }
  if (!index) return fail(index.error().wrap("bridge " + name));
  if (Status s = addAddress(impl_->sock(), *index, gatewayCidr, "gatewayCidr"); !s) {
    return fail(s.error().wrap("bridge " + name));
  }
  if (Status s = pinLinkAddress(impl_->sock(), name); !s) return s;
  return setLinkUp(impl_->sock(), name);
}

Status NodeNetwork::enableIpForwarding() {
  // /proc/sys/net/* shows the network namespace of the thread that opens it.
  auto write = []() -> Status {
    std::ofstream out("/proc/sys/net/ipv4/ip_forward");
    out << "1\n";
    out.flush();
    if (!out) return fail(EIO, "write /proc/sys/net/ipv4/ip_forward");
    return {};
  };
  if (impl_->netnsPath.empty()) return write();
  return runInNetworkNamespace(impl_->netnsPath, write);
}

Status NodeNetwork::createPodLink(const PodLinkSpec& spec) {
  if (spec.hostIfName.empty() || spec.hostIfName.size() >= IFNAMSIZ) {
    return fail(EINVAL, "hostIfName: must be 1-15 characters: \"" + spec.hostIfName + "\"");
  }
  auto bridgeIndex = linkIndex(spec.bridgeName);
  if (!bridgeIndex) return fail(bridgeIndex.error().wrap("pod link " + spec.hostIfName));
  int podNs = ::open(spec.podNetnsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (podNs < 0) return failErrno("open pod network namespace " + spec.podNetnsPath);

  // One RTM_NEWLINK makes both ends: the peer is created directly in the pod
  // namespace under its final name, so no move or rename is needed afterwards.
  LinkPtr veth(rtnl_link_veth_alloc());
  rtnl_link_set_name(veth.get(), spec.hostIfName.c_str());
  rtnl_link_set_master(veth.get(), *bridgeIndex);
  rtnl_link_set_mtu(veth.get(), spec.mtu);
  rtnl_link_set_flags(veth.get(), IFF_UP);
  rtnl_link* peer = rtnl_link_veth_get_peer(veth.get());
  rtnl_link_set_name(peer, "eth0");
  rtnl_link_set_mtu(peer, spec.mtu);
  // (libnl 3.7 fails the whole request when the peer carries flags: eth0 is set up below.)
  rtnl_link_set_ns_fd(peer, podNs);
  rtnl_link_put(peer);
  int err;
  Status hairpin;
  {
    auto lock = impl_->lockSocket();
    err = rtnl_link_add(impl_->sock(), veth.get(), NLM_F_CREATE | NLM_F_EXCL);
    // (Up but without carrier until the pod side's eth0 is up below.)
    if (err >= 0) disableIpv6Addrconf(impl_->sock(), spec.hostIfName);
    if (err >= 0) hairpin = setHairpin(impl_->sock(), spec.hostIfName);
  }
  ::close(podNs);
  if (err < 0) return failNl("create veth " + spec.hostIfName, err);
  if (!hairpin) {
    (void)removePodLink(spec.hostIfName);
    return hairpin;
  }

  Status podSide = runInNetworkNamespace(spec.podNetnsPath, [&]() -> Status {
    auto socket = connectRoute();
    if (!socket) return fail(socket.error());
    return configurePodSide(socket->get(), spec);
  });
  if (!podSide) {
    (void)removePodLink(spec.hostIfName);
    return fail(podSide.error().wrap("configure pod side of " + spec.hostIfName));
  }
  return {};
}

Result<NamespacePins> NodeNetwork::createPodNamespacesAndLink(const std::string& podDir, const std::string& hostname,
                                                              const PodLinkSpec& spec) {
  if (spec.hostIfName.empty() || spec.hostIfName.size() >= IFNAMSIZ) {
    return fail(EINVAL, "hostIfName: must be 1-15 characters: \"" + spec.hostIfName + "\"");
  }
  auto bridgeIndex = linkIndex(spec.bridgeName);
  if (!bridgeIndex) return fail(bridgeIndex.error().wrap("pod link " + spec.hostIfName));

  auto pins = createPodNamespaces(podDir, hostname, [&]() -> Status {
    auto socket = connectRoute();
    if (!socket) return fail(socket.error());
    // Made from inside the pod: eth0 stays here, the peer goes to the node under its name.
    LinkPtr veth(rtnl_link_veth_alloc());
    rtnl_link_set_name(veth.get(), "eth0");
    rtnl_link_set_mtu(veth.get(), spec.mtu);
    rtnl_link* peer = rtnl_link_veth_get_peer(veth.get());
    rtnl_link_set_name(peer, spec.hostIfName.c_str());
    rtnl_link_set_mtu(peer, spec.mtu);
    rtnl_link_set_ns_fd(peer, impl_->netnsFd);
    rtnl_link_put(peer);
    int err = rtnl_link_add(socket->get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (err < 0) return failNl("create veth " + spec.hostIfName, err);
    return configurePodSide(socket->get(), spec);
  });
  if (!pins) return fail(pins.error().wrap("pod network " + spec.hostIfName));

  // The host end, found by name: onto the bridge and up in one request.
  LinkPtr byName(rtnl_link_alloc());
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_name(change.get(), spec.hostIfName.c_str());
  rtnl_link_set_master(change.get(), *bridgeIndex);
  rtnl_link_set_flags(change.get(), IFF_UP);
  Status attached = [&]() -> Status {
    auto lock = impl_->lockSocket();
    disableIpv6Addrconf(impl_->sock(), spec.hostIfName);  // while it is still down
    int err = rtnl_link_change(impl_->sock(), byName.get(), change.get(), 0);
    if (err < 0) return failNl("attach " + spec.hostIfName + " to bridge " + spec.bridgeName, err);
    return setHairpin(impl_->sock(), spec.hostIfName);
  }();
  if (!attached) {
    (void)removePodLink(spec.hostIfName);
    (void)removePodNamespaces(podDir);
    return fail(attached.error());
  }
  return pins;
}

Status NodeNetwork::removePodLink(const std::string& hostIfName) {
  LinkPtr link(rtnl_link_alloc());
  rtnl_link_set_name(link.get(), hostIfName.c_str());
  auto lock = impl_->lockSocket();
  int err = rtnl_link_delete(impl_->sock(), link.get());
  if (err < 0 && !isNotFound(err)) return failNl("delete veth " + hostIfName, err);
  return {};
}

Status NodeNetwork::ensureRoute(const std::string& destinationCidr, const std::string& via) {
  auto lock = impl_->lockSocket();
  return addRoute(impl_->sock(), destinationCidr, via, 0, NLM_F_REPLACE);
}

Status NodeNetwork::removeRoute(const std::string& destinationCidr) {
  auto dst = parseAddress(destinationCidr, "destinationCidr");
  if (!dst) return fail(dst.error());
  NlAddrPtr dstOwner(*dst);
  RoutePtr route(rtnl_route_alloc());
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(route.get(), RT_SCOPE_NOWHERE);  // match any scope
  rtnl_route_set_protocol(route.get(), kFerryRouteProtocol);
  rtnl_route_set_dst(route.get(), dstOwner.get());
  auto lock = impl_->lockSocket();
  int err = rtnl_route_delete(impl_->sock(), route.get(), 0);
  if (err < 0 && !isNotFound(err)) return failNl("delete route " + destinationCidr, err);
  return {};
}

Result<bool> NodeNetwork::hairpinEnabled(const std::string& portName) {
  // Bridge port flags come back only in an AF_BRIDGE dump.
  CachePtr cache;
  auto lock = impl_->lockSocket();
  int err = rtnl_link_alloc_cache(impl_->sock(), AF_BRIDGE, cache.out());
  if (err < 0) return failNl("list bridge ports", err);
  for (nl_object* obj = nl_cache_get_first(cache.get()); obj; obj = nl_cache_get_next(obj)) {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    const char* name = rtnl_link_get_name(link);
    if (name && portName == name) return (rtnl_link_bridge_get_flags(link) & RTNL_BRIDGE_HAIRPIN_MODE) != 0;
  }
  return fail(ENODEV, "bridge port " + portName + ": not found");
}

Result<std::vector<std::string>> NodeNetwork::listLinks() {
  auto lock = impl_->lockSocket();
  return listLinksOn(impl_->sock());
}
Result<std::vector<AddressEntry>> NodeNetwork::listAddresses() {
  auto lock = impl_->lockSocket();
  return listAddressesOn(impl_->sock());
}
Result<std::vector<RouteEntry>> NodeNetwork::listRoutes() {
  auto lock = impl_->lockSocket();
  return listRoutesOn(impl_->sock());
}

Result<std::vector<AddressEntry>> listAddressesIn(const std::string& netnsPath) {
  Result<std::vector<AddressEntry>> result;
  Status status = runInNetworkNamespace(netnsPath, [&]() -> Status {
    auto socket = connectRoute();
    if (!socket) return fail(socket.error());
    result = listAddressesOn(socket->get());
    return {};
  });
  if (!status) return fail(status.error());
  return result;
}

Result<std::vector<RouteEntry>> listRoutesIn(const std::string& netnsPath) {
  Result<std::vector<RouteEntry>> result;
  Status status = runInNetworkNamespace(netnsPath, [&]() -> Status {
    auto socket = connectRoute();
    if (!socket) return fail(socket.error());
    result = listRoutesOn(socket->get());
    return {};
  });
  if (!status) return fail(status.error());
  return result;
}

}  // namespace ferry::netns
